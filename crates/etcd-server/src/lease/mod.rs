//! Lease expiry and keepalives: the Raft leader's lease keeper and the follower's forwarder.
//!
//! Only the Raft leader tracks expiry, in memory; keepalives reset a deadline without a log
//! entry; expired leases are revoked by proposing one `LeaseExpire` command. A member that
//! becomes leader restarts every lease at a full TTL (later, never earlier, than any previous
//! leader would have expired it).

pub mod clock;
pub mod forward;
pub mod keeper;
pub mod table;

pub use clock::{Clock, TokioClock};
pub use keeper::LeaseKeeper;
pub use table::LeaseTable;
