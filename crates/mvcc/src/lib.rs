//! Placeholder: filled by the mvcc work.
