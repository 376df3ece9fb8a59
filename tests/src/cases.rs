//! One test per (target, case): the `against_both_targets!` macro every suite uses, and the
//! runner behind it that starts a cluster, runs the case, prints the members' log tails on
//! failure, and applies `known_gaps` to pgwarden's outcome.

use std::future::Future;
use std::pin::Pin;

use crate::{Cluster, ClusterOptions, Target};

/// Generates one `#[tokio::test]` per (target, case) in modules `etcd` and `pgwarden`: each
/// starts its own cluster from `$options` (a `ClusterOptions`, or a member count) and runs
/// `super::$case(&mut cluster)`. Test names read `<area>::<target>::<case>`.
#[macro_export]
macro_rules! against_both_targets {
    ($options:expr => $($case:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    $crate::cases::run_case(
                        $crate::Target::Etcd,
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
                    $crate::cases::run_case(
                        $crate::Target::Pgwarden,
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

/// The future of one case, borrowing its cluster.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// Starts a cluster for one case and runs it; a failure prints the members' log tails.
/// `case_path` is the test's module path and name, e.g. `conformance::kv::pgwarden::range_queries`;
/// pgwarden failures listed in `known_gaps` are reported instead of failing.
pub async fn run_case(
    target: Target,
    case_path: &str,
    options: impl Into<ClusterOptions>,
    case: impl for<'a> FnOnce(&'a mut Cluster) -> CaseFuture<'a>,
) -> anyhow::Result<()> {
    crate::init_logging();
    let case_name = case_path.replace(&format!("::{target}::"), "::");
    let options = options.into();
    let result = async {
        let mut cluster = Cluster::start(target, options).await?;
        let result = case(&mut cluster).await;
        if result.is_err() {
            eprintln!("{}", cluster.log_tails());
        }
        result
    }
    .await;
    crate::known_gaps::judge(target, &case_name, result)
}
