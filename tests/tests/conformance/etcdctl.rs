//! Debian's etcdctl 3.4 (API v3) as an independent client: exit codes and output shapes of the command
//! families operators and scripts use. The expected shapes are etcd 3.4's, observed; pgwarden must print
//! the same through the same etcdctl.

use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use pgwarden_tests::Cluster;
use pgwarden_tests::Etcdctl;
use pgwarden_tests::etcdctl::EtcdctlOutput;

mod single {
    use super::*;
    pgwarden_tests::against_both_targets!(
        1 => kv_and_txn,
        leases,
        cluster_and_maintenance,
        watch_with_timeout,
        url_endpoints_for_per_endpoint_commands,
    );
}

mod three {
    use super::*;
    pgwarden_tests::against_both_targets!(3 => status_hashkv_and_move_leader);
}

/// etcdctl with `host:port` endpoints. etcdctl 3.4 dials each endpoint of `endpoint status`,
/// `endpoint hashkv` and `move-leader` with the endpoint string as the HTTP/2 `:authority`; given as
/// a URL that authority is malformed, which etcd tolerates and strict HTTP/2 servers refuse. The
/// URL form is covered on its own in `url_endpoints_for_per_endpoint_commands`.
fn etcdctl(cluster: &Cluster) -> Etcdctl {
    Etcdctl::new(cluster.bare_endpoints())
}

/// Runs a command that must succeed and returns its stdout.
async fn ok(etcdctl: &Etcdctl, args: &[&str]) -> anyhow::Result<String> {
    Ok(etcdctl.run(args).await?.ok()?.stdout)
}

/// Runs a command that must fail with exit code 1 and `Error: <message>` on stderr.
async fn fails(etcdctl: &Etcdctl, args: &[&str], message: &str) -> anyhow::Result<EtcdctlOutput> {
    let output = etcdctl.run(args).await?;
    ensure!(output.code == Some(1), "{args:?} must exit 1: {output:?}");
    ensure!(
        output.stderr.contains(&format!("Error: {message}")),
        "{args:?} must report {message:?}: {output:?}"
    );
    Ok(output)
}

async fn kv_and_txn(cluster: &mut Cluster) -> anyhow::Result<()> {
    let etcdctl = etcdctl(cluster);
    ensure!(ok(&etcdctl, &["put", "foo", "bar"]).await? == "OK\n");
    ensure!(ok(&etcdctl, &["get", "foo"]).await? == "foo\nbar\n");
    ok(&etcdctl, &["put", "foo/1", "a"]).await?;
    ok(&etcdctl, &["put", "foo/2", "b"]).await?;
    let keys = ok(&etcdctl, &["get", "foo", "--prefix", "--keys-only"]).await?;
    ensure!(keys == "foo\n\nfoo/1\n\nfoo/2\n\n", "{keys:?}");
    let values = ok(&etcdctl, &["get", "foo/", "--prefix", "--print-value-only"]).await?;
    ensure!(values == "a\nb\n", "{values:?}");
    let limited = ok(
        &etcdctl,
        &["get", "foo", "--prefix", "--limit=1", "--order=DESCEND"],
    )
    .await?;
    ensure!(limited == "foo/2\nb\n", "{limited:?}");
    let from_key = ok(&etcdctl, &["get", "foo/", "--from-key", "--keys-only"]).await?;
    ensure!(from_key == "foo/1\n\nfoo/2\n\n", "{from_key:?}");

    // -w json: the header and base64 keys and values, int64 as JSON numbers.
    let json = ok(&etcdctl, &["get", "foo", "-w", "json"]).await?;
    let value: serde_json::Value = serde_json::from_str(&json).context("parse get -w json")?;
    let header = &value["header"];
    ensure!(
        header["cluster_id"].is_u64() && header["member_id"].is_u64(),
        "{json}"
    );
    ensure!(
        header["revision"] == 4 && header["raft_term"].is_u64(),
        "{json}"
    );
    ensure!(
        value["kvs"][0]["key"] == "Zm9v" && value["kvs"][0]["value"] == "YmFy",
        "{json}"
    );
    ensure!(
        value["kvs"][0]["create_revision"] == 2 && value["count"] == 1,
        "{json}"
    );

    ensure!(ok(&etcdctl, &["del", "foo/1"]).await? == "1\n");
    ensure!(ok(&etcdctl, &["del", "nothing"]).await? == "0\n");
    let prev = ok(&etcdctl, &["del", "foo/2", "--prev-kv"]).await?;
    ensure!(prev == "1\nfoo/2\nb\n", "{prev:?}");

    let txn = "value(\"foo\") = \"bar\"\n\nput foo baz\n\nput foo qux\n\n";
    let output = etcdctl.run_with_stdin(&["txn"], Some(txn)).await?.ok()?;
    ensure!(output.stdout == "SUCCESS\n\nOK\n", "{output:?}");
    let output = etcdctl.run_with_stdin(&["txn"], Some(txn)).await?.ok()?;
    ensure!(output.stdout == "FAILURE\n\nOK\n", "{output:?}");
    ensure!(ok(&etcdctl, &["get", "foo", "--print-value-only"]).await? == "qux\n");

    ensure!(ok(&etcdctl, &["compaction", "2"]).await? == "compacted revision 2\n");
    fails(
        &etcdctl,
        &["get", "foo", "--rev=1"],
        "etcdserver: mvcc: required revision has been compacted",
    )
    .await?;
    fails(
        &etcdctl,
        &["put", "", "v"],
        "etcdserver: key is not provided",
    )
    .await?;
    Ok(())
}

async fn leases(cluster: &mut Cluster) -> anyhow::Result<()> {
    let etcdctl = etcdctl(cluster);
    let granted = ok(&etcdctl, &["lease", "grant", "60"]).await?;
    // "lease <16 hex digits> granted with TTL(60s)"
    let words: Vec<&str> = granted.split_whitespace().collect();
    ensure!(words.len() == 5 && words[0] == "lease", "{granted:?}");
    ensure!(words[2..] == ["granted", "with", "TTL(60s)"], "{granted:?}");
    let id = words[1].to_owned();
    ensure!(
        u64::from_str_radix(&id, 16).is_ok(),
        "hex lease ID: {granted:?}"
    );

    ok(&etcdctl, &["put", "leased", "v", &format!("--lease={id}")]).await?;
    let ttl = ok(&etcdctl, &["lease", "timetolive", &id, "--keys"]).await?;
    let prefix = format!("lease {id} granted with TTL(60s), remaining(");
    ensure!(ttl.starts_with(&prefix), "{ttl:?}");
    ensure!(ttl.ends_with("s), attached keys([leased])\n"), "{ttl:?}");
    ensure!(ok(&etcdctl, &["lease", "list"]).await? == format!("found 1 leases\n{id}\n"));
    let kept = ok(&etcdctl, &["lease", "keep-alive", "--once", &id]).await?;
    ensure!(
        kept == format!("lease {id} keepalived with TTL(60)\n"),
        "{kept:?}"
    );
    ensure!(ok(&etcdctl, &["lease", "revoke", &id]).await? == format!("lease {id} revoked\n"));
    ensure!(
        ok(&etcdctl, &["get", "leased"]).await?.is_empty(),
        "revoke deletes the key"
    );
    let expired = ok(&etcdctl, &["lease", "timetolive", &id]).await?;
    ensure!(
        expired == format!("lease {id} already expired\n"),
        "{expired:?}"
    );
    fails(
        &etcdctl,
        &["lease", "revoke", &id],
        "failed to revoke lease (etcdserver: requested lease not found)",
    )
    .await?;
    Ok(())
}

async fn cluster_and_maintenance(cluster: &mut Cluster) -> anyhow::Result<()> {
    let etcdctl = etcdctl(cluster);
    let spec = cluster.member(0).spec.clone();
    let list = ok(&etcdctl, &["member", "list"]).await?;
    let fields: Vec<&str> = list.trim_end().split(", ").collect();
    ensure!(fields.len() == 6, "{list:?}");
    ensure!(
        fields[1..]
            == [
                "started",
                "m1",
                &spec.peer_url(),
                &spec.client_url(),
                "false"
            ]
    );
    let member_id = fields[0].to_owned();

    let endpoint = cluster.bare_endpoints()[0].clone();
    let health = etcdctl.run(&["endpoint", "health"]).await?.ok()?;
    let healthy = format!("{endpoint} is healthy: successfully committed proposal: took = ");
    ensure!(
        health.stdout.starts_with(&healthy) || health.stderr.starts_with(&healthy),
        "{health:?}"
    );

    let status = ok(&etcdctl, &["endpoint", "status"]).await?;
    // URL, ID, VERSION, DB SIZE, IS LEADER, IS LEARNER, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX, ERRORS
    let fields: Vec<&str> = status.split(',').map(str::trim).collect();
    ensure!(fields.len() >= 9, "{status:?}");
    ensure!(
        fields[0] == endpoint && fields[1] == member_id,
        "{status:?}"
    );
    ensure!(
        fields[4] == "true" && fields[5] == "false",
        "leader, not learner: {status:?}"
    );
    for number in &fields[6..9] {
        ensure!(number.parse::<u64>().is_ok(), "{status:?}");
    }

    ensure!(ok(&etcdctl, &["alarm", "list"]).await?.is_empty());
    let defrag = ok(&etcdctl, &["defrag"]).await?;
    ensure!(defrag == format!("Finished defragmenting etcd member[{endpoint}]\n"));

    let snapshot = spec.data_dir.with_file_name("snapshot.db");
    let path = snapshot.to_string_lossy().into_owned();
    let saved = ok(&etcdctl, &["snapshot", "save", &path]).await?;
    ensure!(saved == format!("Snapshot saved at {path}\n"), "{saved:?}");
    let size = std::fs::metadata(&snapshot).context("snapshot file")?.len();
    ensure!(size % 512 == 32, "snapshot size {size}");

    // A learner does not change the quorum of a one-member cluster, so it can be added and removed.
    let added = ok(
        &etcdctl,
        &[
            "member",
            "add",
            "m2",
            "--learner",
            "--peer-urls=http://127.0.0.1:1",
        ],
    )
    .await?;
    let first = added.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    ensure!(words.len() == 6 && words[0] == "Member" && words[2..5] == ["added", "to", "cluster"]);
    let new_id = words[1].to_owned();
    ensure!(
        added.contains("ETCD_NAME=\"m2\"")
            && added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\"")
    );
    // The members appear in member-list order, which follows the (random) member IDs.
    let initial_cluster = added
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .context("ETCD_INITIAL_CLUSTER line")?
        .trim_matches('"');
    let mut entries: Vec<&str> = initial_cluster.split(',').collect();
    entries.sort();
    let own = format!("m1={}", spec.peer_url());
    ensure!(
        entries == [own.as_str(), "m2=http://127.0.0.1:1"],
        "{added:?}"
    );
    let list = ok(&etcdctl, &["member", "list"]).await?;
    ensure!(
        list.contains(&format!(
            "{new_id}, unstarted, , http://127.0.0.1:1, , true"
        )),
        "{list:?}"
    );
    let removed = ok(&etcdctl, &["member", "remove", &new_id]).await?;
    // etcdctl prints member IDs here with %16x: space-padded when shorter than 16 hex digits.
    let words: Vec<&str> = removed.split_whitespace().collect();
    ensure!(
        words.len() == 6 && words[..5] == ["Member", new_id.as_str(), "removed", "from", "cluster"],
        "{removed:?}"
    );
    fails(
        &etcdctl,
        &["member", "remove", &new_id],
        "etcdserver: member not found",
    )
    .await?;
    Ok(())
}

async fn watch_with_timeout(cluster: &mut Cluster) -> anyhow::Result<()> {
    let etcdctl = etcdctl(cluster);
    ok(&etcdctl, &["put", "w", "1"]).await?; // 2
    let writer = etcdctl.clone();
    // History from revision 2 and the live events that follow, until the watch is stopped.
    let output = etcdctl
        .run_for(
            &["watch", "w", "--rev=2", "--prev-kv"],
            Duration::from_secs(3),
            async move {
                ok(&writer, &["put", "w", "2"]).await?;
                ok(&writer, &["del", "w"]).await?;
                Ok(())
            },
        )
        .await?;
    ensure!(
        output.stdout == "PUT\nw\n1\nPUT\nw\n1\nw\n2\nDELETE\nw\n2\nw\n\n",
        "{output:?}"
    );
    Ok(())
}

async fn status_hashkv_and_move_leader(cluster: &mut Cluster) -> anyhow::Result<()> {
    let etcdctl = etcdctl(cluster);
    ok(&etcdctl, &["put", "k", "v"]).await?;
    // Every member is named in --endpoints (host:port); `--cluster` would dial the members' client
    // URLs, which is the URL form covered by `url_endpoints_for_per_endpoint_commands`.
    let status = ok(&etcdctl, &["endpoint", "status"]).await?;
    let lines: Vec<&str> = status.lines().collect();
    ensure!(lines.len() == 3, "{status:?}");
    let leaders: Vec<&str> = lines
        .iter()
        .filter(|line| line.split(", ").nth(4) == Some("true"))
        .copied()
        .collect();
    ensure!(leaders.len() == 1, "exactly one leader: {status:?}");
    let leader_id = leaders[0].split(", ").nth(1).unwrap_or_default().to_owned();
    let follower_id = lines
        .iter()
        .map(|line| line.split(", ").nth(1).unwrap_or_default())
        .find(|id| *id != leader_id)
        .context("a follower")?
        .to_owned();

    let hashes = pgwarden_tests::eventually(
        "equal hashkv on every member",
        Duration::from_secs(15),
        || async {
            let output = ok(&etcdctl, &["endpoint", "hashkv"]).await?;
            let hashes: Vec<&str> = output
                .lines()
                .filter_map(|line| line.split(", ").nth(1))
                .collect();
            ensure!(hashes.len() == 3, "{output:?}");
            ensure!(hashes.iter().all(|hash| *hash == hashes[0]), "{output:?}");
            Ok(output)
        },
    )
    .await?;
    ensure!(hashes.lines().all(|line| {
        line.split(", ")
            .nth(1)
            .is_some_and(|h| h.parse::<u32>().is_ok())
    }));

    let moved = ok(&etcdctl, &["move-leader", &follower_id]).await?;
    ensure!(
        moved == format!("Leadership transferred from {leader_id} to {follower_id}\n"),
        "{moved:?}"
    );
    let health = etcdctl.run(&["endpoint", "health", "--cluster"]).await?;
    // `endpoint health` goes through the client's balancer, so the URL form works there.
    ensure!(health.success(), "{health:?}");
    Ok(())
}

/// The per-endpoint commands with endpoints given as URLs (`--endpoints=http://127.0.0.1:2379`),
/// which is how many scripts write them.
async fn url_endpoints_for_per_endpoint_commands(cluster: &mut Cluster) -> anyhow::Result<()> {
    let etcdctl = Etcdctl::new(cluster.endpoints());
    let url = cluster.member(0).spec.client_url();
    let status = ok(&etcdctl, &["endpoint", "status"]).await?;
    ensure!(status.starts_with(&format!("{url}, ")), "{status:?}");
    let hashkv = ok(&etcdctl, &["endpoint", "hashkv"]).await?;
    ensure!(hashkv.starts_with(&format!("{url}, ")), "{hashkv:?}");
    // `--cluster` dials every member's advertised client URL, always in URL form.
    let bare = Etcdctl::new(cluster.bare_endpoints());
    let status = ok(&bare, &["endpoint", "status", "--cluster"]).await?;
    ensure!(status.starts_with(&format!("{url}, ")), "{status:?}");
    Ok(())
}

/// The same etcdctl commands with `-w json` against a real etcd and against pgwarden: exit codes
/// and the JSON shapes (field names and value types, recursively) must match. Values such as IDs
/// differ between implementations and are not compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_json_shapes_as_etcd() -> anyhow::Result<()> {
    pgwarden_tests::init_logging();
    let etcd = Cluster::start(
        pgwarden_tests::Target::Etcd,
        pgwarden_tests::ClusterOptions::members(1),
    )
    .await?;
    let reference = json_transcript(&etcd).await?;
    let result = async {
        let pgwarden = Cluster::start(
            pgwarden_tests::Target::Pgwarden,
            pgwarden_tests::ClusterOptions::members(1),
        )
        .await?;
        let candidate = json_transcript(&pgwarden).await?;
        let mut differences = Vec::new();
        for (expected, actual) in reference.iter().zip(&candidate) {
            if expected != actual {
                differences.push(format!("etcd:     {expected}\npgwarden: {actual}"));
            }
        }
        ensure!(
            differences.is_empty(),
            "etcdctl output differs:\n{}",
            differences.join("\n\n")
        );
        Ok(())
    }
    .await;
    pgwarden_tests::known_gaps::judge(
        pgwarden_tests::Target::Pgwarden,
        "conformance::etcdctl::same_json_shapes_as_etcd",
        result,
    )
}

/// Runs a fixed command sequence and renders each outcome as "command → exit code, JSON shape".
async fn json_transcript(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let etcdctl = etcdctl(cluster);
    let granted = ok(&etcdctl, &["lease", "grant", "60"]).await?;
    let lease = granted
        .split_whitespace()
        .nth(1)
        .context("lease ID")?
        .to_owned();
    let txn = "value(\"k\") = \"v\"\n\nput k w\n\nget k\n\n";
    let commands: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["put", "k", "v"], None),
        (vec!["put", "k", "v", "--prev-kv"], None),
        (vec!["put", "leased", "x", "--lease", &lease], None),
        (vec!["get", "k"], None),
        (vec!["get", "", "--prefix", "--keys-only"], None),
        (vec!["get", "missing"], None),
        (vec!["get", "k", "--rev=100"], None),
        (vec!["txn"], Some(txn)),
        (vec!["del", "k", "--prev-kv"], None),
        (vec!["lease", "timetolive", &lease, "--keys"], None),
        (vec!["lease", "list"], None),
        (vec!["lease", "keep-alive", "--once", &lease], None),
        (vec!["member", "list"], None),
        (vec!["endpoint", "status"], None),
        (vec!["endpoint", "hashkv"], None),
        (vec!["alarm", "list"], None),
        (vec!["compaction", "3"], None),
        (vec!["get", "k", "--rev=2"], None),
        (vec!["lease", "revoke", &lease], None),
    ];
    let mut transcript = Vec::new();
    for (args, stdin) in commands {
        let mut full = args.clone();
        full.extend(["-w", "json"]);
        let output = etcdctl.run_with_stdin(&full, stdin).await?;
        let shape = match serde_json::from_str::<serde_json::Value>(output.stdout.trim()) {
            Ok(value) => shape_of(&value),
            Err(_) if output.stdout.trim().is_empty() => "(no output)".to_owned(),
            Err(_) => format!("(text) {}", output.stdout.trim()),
        };
        let error = output
            .stderr
            .lines()
            .find_map(|line| line.strip_prefix("Error: "))
            .unwrap_or_default()
            .to_owned();
        let command = format!("{args:?}").replace(&lease, "<lease>");
        transcript.push(format!(
            "{command} → exit {:?} {error} {shape}",
            output.code
        ));
    }
    Ok(transcript)
}

/// Field names and value types, recursively; arrays by the shape of their first element.
fn shape_of(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "bool".to_owned(),
        Value::Number(_) => "number".to_owned(),
        Value::String(_) => "string".to_owned(),
        Value::Array(items) => match items.first() {
            Some(first) => format!("[{}]", shape_of(first)),
            None => "[]".to_owned(),
        },
        Value::Object(fields) => {
            let mut rendered: Vec<String> = fields
                .iter()
                .map(|(name, value)| format!("{name}:{}", shape_of(value)))
                .collect();
            rendered.sort();
            format!("{{{}}}", rendered.join(","))
        }
    }
}
