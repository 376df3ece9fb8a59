//! `pgwarden etcd` as a process: flag errors and several client URLs (pgwarden only; the flag
//! parsing itself is unit-tested in the binary's crate).

use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::ensure;
use pgwarden_tests::Target;
use pgwarden_tests::cluster::connect;
use pgwarden_tests::eventually;
use pgwarden_tests::ports::free_ports;

/// Kills the process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pgwarden_etcd(args: &[&str]) -> anyhow::Result<Command> {
    let (program, leading) = Target::Pgwarden.command()?;
    let mut command = Command::new(program);
    command.args(leading).args(args);
    Ok(command)
}

#[test]
fn unusable_flags_exit_2_naming_the_flag() -> anyhow::Result<()> {
    let cases: &[(&[&str], &str)] = &[
        (&["--listen-client-urls=https://127.0.0.1:1"], "--cert-file"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--election-timeout=100"], "--election-timeout"),
        (
            &["--name=a", "--initial-cluster=b=http://127.0.0.1:1"],
            "--initial-cluster",
        ),
        (
            &["--initial-cluster-state=maybe"],
            "--initial-cluster-state",
        ),
    ];
    for (args, named) in cases {
        let output = pgwarden_etcd(args)?.stdin(Stdio::null()).output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.code() == Some(2),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        ensure!(
            stderr.contains(named),
            "{args:?} must name {named}: {stderr}"
        );
    }
    Ok(())
}

/// Two client URLs serve one member; a lease kept alive through the first is not expired by the
/// second (the listeners share one lease keeper).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_client_urls_share_one_service() -> anyhow::Result<()> {
    pgwarden_tests::init_logging();
    let dir = tempfile::tempdir()?;
    let ports = free_ports(3)?;
    let (first, second) = (
        format!("http://127.0.0.1:{}", ports[0]),
        format!("http://127.0.0.1:{}", ports[1]),
    );
    let peer = format!("http://127.0.0.1:{}", ports[2]);
    let log = std::fs::File::create(dir.path().join("member.log"))?;
    let child = pgwarden_etcd(&[
        "--name=solo",
        &format!("--data-dir={}", dir.path().join("solo.etcd").display()),
        &format!("--listen-client-urls={first},{second}"),
        &format!("--advertise-client-urls={first},{second}"),
        &format!("--listen-peer-urls={peer}"),
        &format!("--initial-advertise-peer-urls={peer}"),
    ])?
    .stdin(Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log)
    .spawn()?;
    let _member = KillOnDrop(child);

    let mut via_first = connect(std::slice::from_ref(&first)).await?;
    let mut via_second = connect(std::slice::from_ref(&second)).await?;
    eventually(
        "both client URLs to answer",
        Duration::from_secs(30),
        || {
            let (mut a, mut b) = (via_first.clone(), via_second.clone());
            async move {
                a.put("ready", "1", None).await?;
                ensure!(b.get("ready", None).await?.count() == 1);
                Ok(())
            }
        },
    )
    .await?;
    // The member publishes its client URLs through the log shortly after start.
    let advertised = [first.clone(), second.clone()];
    eventually(
        "both client URLs advertised",
        Duration::from_secs(10),
        || {
            let mut client = via_second.clone();
            let advertised = advertised.clone();
            async move {
                let members = client.member_list().await?;
                let urls = members.members().first().map(|m| m.client_urls().to_vec());
                ensure!(urls.as_deref() == Some(advertised.as_slice()), "{urls:?}");
                Ok(())
            }
        },
    )
    .await?;

    let lease = via_first.lease_grant(2, None).await?.id();
    let (mut keeper, mut responses) = via_first.lease_keep_alive(lease).await?;
    // Three TTLs of keepalives through the first URL, checking through the second all along.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        keeper.keep_alive().await?;
        responses
            .message()
            .await?
            .context("keepalive stream ended")?;
        let ttl = via_second.lease_time_to_live(lease, None).await?.ttl();
        ensure!(
            ttl > 0,
            "lease expired although kept alive through the other URL"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
