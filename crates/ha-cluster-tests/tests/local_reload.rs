//! The local configuration file read again while running, as Patroni's SIGHUP and `POST
//! /reload` do: a member that gets SIGHUP keeps running (left at its default, the signal would
//! end `pgwarden run` and leave PostgreSQL without its supervisor), takes a new tag and a new
//! local PostgreSQL parameter at once, keeps the running value of a key that needs a restart
//! (and says so in its log), and refuses a file that does not load, changing nothing. The same
//! member bootstraps with `bootstrap.initdb` options.

use std::time::Duration;

use anyhow::Context;
use ha_cluster_tests::{Cluster, ClusterOptions, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration_file() -> anyhow::Result<()> {
    // `bootstrap.initdb` reaches initdb: 32 MB WAL segments instead of the default 16.
    let mut cluster = Cluster::start_with(
        1,
        ClusterOptions {
            bootstrap_yaml: "initdb: [data-checksums, {wal-segsize: 32}, {locale: C}]".to_owned(),
            ..ClusterOptions::default()
        },
    )?;
    cluster.wait_healthy(0, Duration::from_secs(120)).await?;
    let node = &cluster.nodes[0];
    let path = node.config_path().to_path_buf();
    let original = std::fs::read_to_string(&path)?;
    let rest = node.rest_address();
    assert_eq!(
        node.query("SHOW wal_segment_size").await?.as_deref(),
        Some("32MB"),
        "bootstrap.initdb options reach initdb"
    );

    // A local parameter and a tag (live), and the REST API's connect address (needs a restart).
    let edited = original
        .replace(
            "    fsync: 'off'\n",
            "    fsync: 'off'\n    work_mem: 7MB\n",
        )
        .replace(
            &format!("connect_address: {rest}"),
            "connect_address: 127.0.0.1:1",
        )
        + "tags:\n  nofailover: true\n";
    std::fs::write(&path, &edited)?;
    assert!(node.hangup(), "SIGHUP sent");
    eventually(Duration::from_secs(30), || async {
        let work_mem = node.query("SHOW work_mem").await.ok()??;
        let status = node.patroni().await?;
        (work_mem == "7MB" && status["tags"]["nofailover"] == true).then_some(())
    })
    .await
    .with_context(|| format!("the reload did not apply:\n{}", cluster.logs()))?;
    let log = node.log();
    assert!(
        log.contains("take effect when pgwarden restarts") && log.contains("restapi"),
        "no warning naming restapi:\n{log}"
    );
    assert_eq!(
        node.patroni().await.context("/patroni")?["state"],
        "running",
        "the REST API still answers at its running address"
    );

    // A file that does not load: refused, the member keeps running with what it had.
    std::fs::write(&path, format!("{edited}bogus_key: 1\n"))?;
    assert!(node.hangup(), "SIGHUP sent");
    eventually(Duration::from_secs(30), || async {
        node.log()
            .contains("not reloaded, nothing changed")
            .then_some(())
    })
    .await
    .with_context(|| format!("no refusal logged:\n{}", node.log()))?;
    assert!(
        node.log().contains("bogus_key"),
        "the refusal names the key"
    );
    assert_eq!(
        node.query("SHOW work_mem").await?.as_deref(),
        Some("7MB"),
        "unchanged"
    );
    assert!(
        cluster.nodes[0].is_running(),
        "pgwarden run survives SIGHUP"
    );
    Ok(())
}
