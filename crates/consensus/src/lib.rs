//! Placeholder: filled by the consensus work.
