//! Cluster mode (issue 26): KMS replicas sharing one authenticated state record in etcd.
//!
//! - [`envelope`]: the state record's binary format, sealed with AES-256-GCM under a key
//!   derived from the cluster key; etcd can replay, withhold or delete it, never read or forge it.
//! - [`etcd`]: a blocking client for etcd's v3 JSON gateway (linearizable get, compare-and-swap
//!   put, watch), with several endpoints and errors that name endpoint, operation, key and cause.
//!
//! Both files depend on external crates only (no `crate::` paths), so the integration tests
//! and the fuzz targets compile them by path.

pub mod envelope;
pub mod etcd;
