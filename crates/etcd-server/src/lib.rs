//! Placeholder: filled by the etcd-server work.
