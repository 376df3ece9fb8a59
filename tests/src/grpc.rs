//! Helpers for asserting on etcd's gRPC errors through the `etcd-client` crate.

use anyhow::anyhow;
use anyhow::bail;
use tonic::Code;

/// The gRPC status inside a client error, if the server answered with one.
pub fn status_of(error: &etcd_client::Error) -> Option<&tonic::Status> {
    match error {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        _ => None,
    }
}

/// Asserts that `result` failed with exactly `code` and `message` (clients match on both).
pub fn expect_status<T: std::fmt::Debug>(
    result: Result<T, etcd_client::Error>,
    code: Code,
    message: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(value) => bail!("expected {code:?} {message:?}, got success: {value:?}"),
        Err(error) => {
            let status = status_of(&error).ok_or_else(|| {
                anyhow!("expected {code:?} {message:?}, got client error {error}")
            })?;
            if status.code() != code || status.message() != message {
                bail!(
                    "expected {code:?} {message:?}, got {:?} {:?}",
                    status.code(),
                    status.message()
                );
            }
            Ok(())
        }
    }
}
