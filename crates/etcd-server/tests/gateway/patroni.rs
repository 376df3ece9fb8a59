//! Patroni's real etcd3 DCS client against pgwarden, when a Python with Patroni is at hand.

use std::time::Duration;

use crate::support::*;

/// Patroni's own etcd3 DCS (patroni/dcs/etcd3.py) against pgwarden: lease at start, the
/// initialize race, the member key, the leader race, the KVCache (a prefix range, then a
/// watch from its revision), update_leader with a new lease through the nested txn, CAS on
/// config, delete_leader and delete_cluster.
const PATRONI_SCRIPT: &str = r#"
import json, logging, sys, time
from patroni.dcs import get_dcs

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

def eventually(what, probe, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)

def cluster_where(what, condition):
    seen = []
    def probe():
        cluster = dcs.get_cluster()
        seen[:] = [cluster]
        # A list, as an empty Cluster is falsy.
        return [cluster] if condition(cluster) else None
    try:
        return eventually(what, probe)[0]
    except AssertionError:
        raise AssertionError('timed out waiting for {0}; the cluster: {1}'.format(what, seen))

config = {'scope': 'batman', 'name': 'pg0', 'namespace': '/service/', 'ttl': 30, 'loop_wait': 10,
          'retry_timeout': 10, 'etcd3': {'hosts': ['127.0.0.1:' + sys.argv[1]]}}
dcs = get_dcs(config)
client = dcs._client
assert dcs._lease, 'a lease is granted at start'
assert dcs.initialize(create_new=True, sysid='7001')
assert not dcs.initialize(create_new=True, sysid='7002'), 'initialize is create-only'
assert dcs.touch_member({'conn_url': 'postgres://127.0.0.1:5432/postgres', 'state': 'running',
                         'api_url': 'http://127.0.0.1:8008/patroni', 'role': 'primary'})
assert dcs.attempt_to_acquire_leader()
assert client.version_prefix == '/v3', client.version_prefix
cluster = cluster_where('the leader in the cache', lambda c: c.leader and c.leader.name == 'pg0')
assert cluster.initialize == '7001', cluster.initialize
assert [m.name for m in cluster.members] == ['pg0'], cluster.members
assert cluster.leader.session == dcs._lease
assert dcs.update_leader(cluster, 100), 'refresh with the same lease'

# A new lease while the leader key is gone: the nested txn of the failure branch re-creates it.
client.deleterange(dcs.leader_path)
cluster_where('the leader key deleted', lambda c: c.leader is None)
dcs._lease = None
assert dcs.update_leader(cluster, 200)
cluster = cluster_where('the leader on the new lease', lambda c: c.leader and c.leader.session == dcs._lease)

assert dcs.set_config_value(json.dumps({'ttl': 30}))
cluster = cluster_where('the config in the cache', lambda c: c.config and c.config.data.get('ttl') == 30)
assert dcs.set_config_value(json.dumps({'ttl': 31}), cluster.config.version), 'CAS on mod_revision'
assert not dcs.set_config_value(json.dumps({'ttl': 32}), cluster.config.version), 'stale CAS fails'
cluster = cluster_where('the new config', lambda c: c.config and c.config.data.get('ttl') == 31)
assert cluster.status.last_lsn == 200, cluster.status

assert dcs.delete_leader(cluster.leader)
cluster_where('no leader', lambda c: c.leader is None)
assert dcs.delete_cluster()
cluster_where('an empty cluster', lambda c: c.initialize is None and not c.members)
print('PATRONI-OK')
"#;

/// Runs [`PATRONI_SCRIPT`] with the Python named by `PGWARDEN_TEST_PYTHON` (default
/// `python3`); skips, saying why, when that Python cannot import Patroni's etcd3 module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patronis_etcd3_dcs_uses_pgwarden() {
    let python = std::env::var("PGWARDEN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = tokio::time::timeout(
        WITHIN,
        tokio::process::Command::new(&python)
            .args(["-c", "import patroni.dcs.etcd3"])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match probe {
        Ok(Ok(output)) if output.status.success() => {}
        Ok(Ok(output)) => {
            eprintln!(
                "skipping: {python} cannot import patroni.dcs.etcd3 (set PGWARDEN_TEST_PYTHON to a \
                 Python with `pip install patroni[etcd3] psycopg2-binary`): {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            );
            return;
        }
        Ok(Err(error)) => {
            eprintln!("skipping: cannot run {python}: {error}");
            return;
        }
        Err(_) => {
            eprintln!("skipping: {python} did not answer within {WITHIN:?}");
            return;
        }
    }
    let member = Member::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("patroni_dcs.py");
    std::fs::write(&script, PATRONI_SCRIPT).unwrap();
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(member.addr.port().to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Patroni script finishes within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("PATRONI-OK"),
        "Patroni's etcd3 DCS failed against pgwarden ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    member.stop().await;
}
