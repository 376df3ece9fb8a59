//! etcd v3 conformance: every case runs against a real etcd (the reference) and against `pgwarden etcd`,
//! through independent clients (the `etcd-client` crate and Debian's `etcdctl`).
//!
//! Assertions are written from etcd's observed behaviour; where etcd 3.4 differs from
//! `etcd-api.md`, etcd wins and the case says so in a comment.
//! Test names read `<area>::<target>::<case>`, so `cargo nextest run -E 'test(/::pgwarden::/)'`
//! runs one target. The suites need the pgwarden binary built first: `cargo build -p pgwarden`.

mod binary;
mod cluster_api;
mod compact;
mod etcdctl;
mod kv;
mod lease;
mod maintenance;
mod restart;
mod txn;
mod watch;

use pgwarden_tests::Cluster;

/// Generates one `#[tokio::test]` per (target, case): each starts its own cluster of `$members`,
/// runs `super::$case(&cluster)`, and prints the members' log tails when the case fails.
#[macro_export]
macro_rules! against_both_targets {
    ($members:expr => $($case:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    $crate::run_case(
                        pgwarden_tests::Target::Etcd,
                        concat!(module_path!(), "::", stringify!($case)),
                        $members,
                        |cluster| Box::pin(super::$case(cluster)),
                    )
                    .await
                }
            )*
        }
        mod pgwarden {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    $crate::run_case(
                        pgwarden_tests::Target::Pgwarden,
                        concat!(module_path!(), "::", stringify!($case)),
                        $members,
                        |cluster| Box::pin(super::$case(cluster)),
                    )
                    .await
                }
            )*
        }
    };
}

type CaseFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

/// Starts a cluster for one case and runs it; a failure prints the members' log tails.
/// `case_path` is the test's module path and name, e.g. `conformance::kv::pgwarden::range_queries`;
/// pgwarden failures listed in `KNOWN_GAPS` are reported instead of failing.
pub async fn run_case(
    target: pgwarden_tests::Target,
    case_path: &str,
    members: usize,
    case: impl for<'a> FnOnce(&'a mut Cluster) -> CaseFuture<'a>,
) -> anyhow::Result<()> {
    pgwarden_tests::init_logging();
    let case_name = case_path.replace(&format!("::{target}::"), "::");
    let result = async {
        let mut cluster =
            Cluster::start(target, pgwarden_tests::ClusterOptions::members(members)).await?;
        let result = case(&mut cluster).await;
        if result.is_err() {
            eprintln!("{}", cluster.log_tails());
        }
        result
    }
    .await;
    pgwarden_tests::known_gaps::judge(target, &case_name, result)
}
