#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use super::*;

const RUNNING: &str = r#"
scope: demo
name: n1
restapi:
  listen: 127.0.0.1:8009
  connect_address: 127.0.0.1:8009
raft:
  data_dir: /var/lib/pgwarden/n1/raft
  self_addr: 127.0.0.1:2381
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/pgwarden/n1/pgdata
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser: {username: postgres}
    replication: {username: replicator}
  parameters:
    work_mem: 4MB
  pg_hba:
  - local all all trust
tags:
  nofailover: false
"#;

fn config(text: &str) -> RunConfig {
    RunConfig::parse(text).unwrap()
}

#[test]
fn live_keys_apply_and_restart_keys_keep_their_running_value() {
    let running = config(RUNNING);
    type Edit = fn(&str) -> String;
    type Check = fn(&RunConfig) -> bool;
    // (what changed in the file, the edit, keys that wait for a restart, the merged value)
    let cases: [(&str, Edit, &[&str], Check); 7] = [
        ("nothing", str::to_owned, &[], |merged| {
            merged.postgresql.parameters["work_mem"] == "4MB"
        }),
        (
            "a tag",
            |text| text.replace("nofailover: false", "nofailover: true"),
            &[],
            |merged| merged.tags["nofailover"] == serde_json::json!(true),
        ),
        (
            "a local parameter and pg_hba",
            |text| {
                text.replace("work_mem: 4MB", "work_mem: 8MB").replace(
                    "  - local all all trust\n",
                    "  - local all all trust\n  - host all all 127.0.0.1/32 trust\n",
                )
            },
            &[],
            |merged| {
                merged.postgresql.parameters["work_mem"] == "8MB"
                    && merged.postgresql.pg_hba.len() == 2
            },
        ),
        (
            "a callback",
            |text| {
                text.replace(
                    "  pg_hba:\n",
                    "  callbacks: {on_start: /bin/true}\n  pg_hba:\n",
                )
            },
            &[],
            |merged| merged.postgresql.callbacks.contains_key("on_start"),
        ),
        (
            "the REST API address",
            |text| text.replace("listen: 127.0.0.1:8009", "listen: 127.0.0.1:8010"),
            &["restapi"],
            |merged| merged.restapi.listen.port() == 8009,
        ),
        (
            "the name and the data directory",
            |text| {
                text.replace("name: n1", "name: n9")
                    .replace("n1/pgdata", "n9/pgdata")
            },
            &["name", "postgresql.data_dir"],
            |merged| merged.name == "n1" && merged.postgresql.data_dir.ends_with("n1/pgdata"),
        ),
        (
            "a live and a restart key together",
            |text| {
                text.replace("self_addr: 127.0.0.1:2381", "self_addr: 127.0.0.1:2391")
                    .replace("nofailover: false", "nofailover: true")
            },
            &["raft"],
            |merged| {
                merged.tags["nofailover"] == serde_json::json!(true)
                    && merged.raft.as_ref().unwrap().self_addr.port() == 2381
            },
        ),
    ];
    for (what, edit, waiting, check) in cases {
        let (merged, found) = merge(&running, config(&edit(RUNNING)));
        assert_eq!(found, waiting, "{what}");
        assert!(check(&merged), "{what}: {merged:?}");
    }
}
