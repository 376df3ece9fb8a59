//! The pgwarden binary.
fn main() {}
