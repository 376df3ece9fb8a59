//! etcd's errors as a wire contract: the gRPC status code and the exact message text.
//!
//! Clients match on the text (Go clientv3 maps messages back to typed errors; Patroni matches
//! substrings), so every message here is verbatim etcd. Build a `tonic::Status` only through
//! [`EtcdError::status`] so the mapping lives in exactly one place.

use tonic::Code;

/// One etcd error: its gRPC code and its exact message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdError {
    pub code: Code,
    pub message: &'static str,
}

impl EtcdError {
    const fn new(code: Code, message: &'static str) -> Self {
        Self { code, message }
    }

    /// The gRPC status a server returns for this error.
    pub fn status(self) -> tonic::Status {
        tonic::Status::new(self.code, self.message)
    }

    /// Finds the catalogue entry with this exact message, if any.
    pub fn from_message(message: &str) -> Option<EtcdError> {
        ALL.iter().copied().find(|error| error.message == message)
    }
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for EtcdError {}

macro_rules! catalogue {
    ($($name:ident = ($code:ident, $message:literal);)*) => {
        $(pub const $name: EtcdError = EtcdError::new(Code::$code, $message);)*
        /// Every error of the catalogue.
        pub const ALL: &[EtcdError] = &[$($name),*];
    };
}

catalogue! {
    EMPTY_KEY = (InvalidArgument, "etcdserver: key is not provided");
    KEY_NOT_FOUND = (InvalidArgument, "etcdserver: key not found");
    VALUE_PROVIDED = (InvalidArgument, "etcdserver: value is provided");
    LEASE_PROVIDED = (InvalidArgument, "etcdserver: lease is provided");
    TOO_MANY_OPS = (InvalidArgument, "etcdserver: too many operations in txn request");
    DUPLICATE_KEY = (InvalidArgument, "etcdserver: duplicate key given in txn request");
    INVALID_SORT_OPTION = (InvalidArgument, "etcdserver: invalid sort option");
    REQUEST_TOO_LARGE = (InvalidArgument, "etcdserver: request is too large");
    COMPACTED = (OutOfRange, "etcdserver: mvcc: required revision has been compacted");
    FUTURE_REV = (OutOfRange, "etcdserver: mvcc: required revision is a future revision");
    NO_SPACE = (ResourceExhausted, "etcdserver: mvcc: database space exceeded");
    TOO_MANY_REQUESTS = (ResourceExhausted, "etcdserver: too many requests");
    LEASE_NOT_FOUND = (NotFound, "etcdserver: requested lease not found");
    LEASE_EXIST = (FailedPrecondition, "etcdserver: lease already exists");
    LEASE_TTL_TOO_LARGE = (OutOfRange, "etcdserver: too large lease TTL");
    NO_LEADER = (Unavailable, "etcdserver: no leader");
    NOT_LEADER = (FailedPrecondition, "etcdserver: not leader");
    LEADER_CHANGED = (Unavailable, "etcdserver: leader changed");
    STOPPED = (Unavailable, "etcdserver: server stopped");
    TIMEOUT = (Unavailable, "etcdserver: request timed out");
    TIMEOUT_DUE_TO_LEADER_FAIL = (Unavailable, "etcdserver: request timed out, possibly due to previous leader failure");
    TIMEOUT_DUE_TO_CONNECTION_LOST = (Unavailable, "etcdserver: request timed out, possibly due to connection lost");
    TIMEOUT_WAIT_APPLIED_INDEX = (Unavailable, "etcdserver: request timed out, waiting for the applied index took too long");
    UNHEALTHY_CLUSTER = (Unavailable, "etcdserver: unhealthy cluster");
    CORRUPT = (DataLoss, "etcdserver: corrupt cluster");
    NOT_SUPPORTED_FOR_LEARNER = (FailedPrecondition, "etcdserver: rpc not supported for learner");
    BAD_LEADER_TRANSFEREE = (FailedPrecondition, "etcdserver: bad leader transferee");
    MEMBER_NOT_FOUND = (NotFound, "etcdserver: member not found");
    MEMBER_EXIST = (FailedPrecondition, "etcdserver: member ID already exist");
    PEER_URL_EXIST = (FailedPrecondition, "etcdserver: Peer URLs already exists");
    MEMBER_BAD_URLS = (InvalidArgument, "etcdserver: given member URLs are invalid");
    MEMBER_NOT_LEARNER = (FailedPrecondition, "etcdserver: can only promote a learner member");
    LEARNER_NOT_READY = (FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader");
    TOO_MANY_LEARNERS = (FailedPrecondition, "etcdserver: too many learner members in cluster");
    NOT_ENOUGH_STARTED_MEMBERS = (FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members");
    USER_EMPTY = (InvalidArgument, "etcdserver: user name is empty");
    ROLE_EMPTY = (InvalidArgument, "etcdserver: role name is empty");
    AUTH_FAILED = (InvalidArgument, "etcdserver: authentication failed, invalid user ID or password");
    INVALID_AUTH_TOKEN = (Unauthenticated, "etcdserver: invalid auth token");
    AUTH_OLD_REVISION = (InvalidArgument, "etcdserver: revision of auth store is old");
    PERMISSION_DENIED = (PermissionDenied, "etcdserver: permission denied");
    AUTH_NOT_ENABLED = (FailedPrecondition, "etcdserver: authentication is not enabled");
    USER_ALREADY_EXIST = (FailedPrecondition, "etcdserver: user name already exists");
    USER_NOT_FOUND = (FailedPrecondition, "etcdserver: user name not found");
    ROLE_ALREADY_EXIST = (FailedPrecondition, "etcdserver: role name already exists");
    ROLE_NOT_FOUND = (FailedPrecondition, "etcdserver: role name not found");
    ROOT_USER_NOT_EXIST = (FailedPrecondition, "etcdserver: root user does not exist");
    ROOT_ROLE_NOT_EXIST = (FailedPrecondition, "etcdserver: root user does not have root role");
    PERMISSION_NOT_GIVEN = (InvalidArgument, "etcdserver: permission not given");
    ROLE_NOT_GRANTED = (FailedPrecondition, "etcdserver: role is not granted to the user");
    PERMISSION_NOT_GRANTED = (FailedPrecondition, "etcdserver: permission is not granted to the role");
    INVALID_AUTH_MGMT = (InvalidArgument, "etcdserver: invalid auth management");
    NOT_CAPABLE = (FailedPrecondition, "etcdserver: not capable");
    INVALID_CLIENT_API_VERSION = (InvalidArgument, "etcdserver: invalid client api version");
    CANCELED = (Cancelled, "etcdserver: request canceled");
    DEADLINE_EXCEEDED = (DeadlineExceeded, "etcdserver: context deadline exceeded");
    WATCH_CANCELED = (Cancelled, "etcdserver: watch canceled");
}

/// Watch `cancel_reason` for a duplicate watch ID on one stream (sent in a response, not a status).
pub const WATCH_DUPLICATE_ID_REASON: &str = "mvcc: duplicate watch ID provided on the WatchStream";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for error in ALL {
            assert!(
                error.message.starts_with("etcdserver: "),
                "{}",
                error.message
            );
            assert!(
                seen.insert(error.message),
                "duplicate message {}",
                error.message
            );
        }
    }

    #[test]
    fn status_carries_code_and_exact_text() {
        let status = COMPACTED.status();
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(EtcdError::from_message(status.message()), Some(COMPACTED));
    }
}
