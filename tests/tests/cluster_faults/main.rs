//! Multi-process faults on three-member clusters: leader kill and failover, catch-up after restart
//! and by snapshot, membership change with a fourth process, and a member cut off from the majority.
//!
//! Each case runs against pgwarden and, as the reference, against a real etcd started with the
//! same flags. Properties are checked from what clients observed (acknowledged writes, revisions,
//! errors), never from log lines. Times are printed for the record; assertions only use generous
//! bounds, since these are not benchmarks.

mod catch_up;
mod failover;
mod isolation;
mod membership;
mod recorder;

use pgwarden_tests::Cluster;
use pgwarden_tests::ClusterOptions;

/// One `#[tokio::test]` per (target, case); each case builds its own cluster from `$options`.
#[macro_export]
macro_rules! against_both_targets {
    ($options:expr => $($case:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    $crate::run_case(
                        pgwarden_tests::Target::Etcd,
                        concat!(module_path!(), "::", stringify!($case)),
                        $options,
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
                        $options,
                        |cluster| Box::pin(super::$case(cluster)),
                    )
                    .await
                }
            )*
        }
    };
}

type CaseFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

/// Starts the cluster, runs the case, prints the members' log tails on failure, and applies
/// `KNOWN_GAPS` to pgwarden's outcome.
pub async fn run_case(
    target: pgwarden_tests::Target,
    case_path: &str,
    options: ClusterOptions,
    case: impl for<'a> FnOnce(&'a mut Cluster) -> CaseFuture<'a>,
) -> anyhow::Result<()> {
    pgwarden_tests::init_logging();
    let case_name = case_path.replace(&format!("::{target}::"), "::");
    let result = async {
        let mut cluster = Cluster::start(target, options).await?;
        let result = case(&mut cluster).await;
        if result.is_err() {
            eprintln!("{}", cluster.log_tails());
        }
        result
    }
    .await;
    pgwarden_tests::known_gaps::judge(target, &case_name, result)
}
