//! Placeholder: filled by the storage work.
