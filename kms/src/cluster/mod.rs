//! Cluster mode (issue 26): KMS replicas sharing one authenticated state record in etcd,
//! encrypted under a cluster key that only attested replicas hold.
//!
//! - [`envelope`]: the state record's binary format, sealed with AES-256-GCM under a key
//!   derived from the cluster key; etcd can replay, withhold or delete it, never read or forge it.
//! - [`etcd`]: a blocking client for etcd's v3 JSON gateway (linearizable get, compare-and-swap
//!   put, watch), with several endpoints and errors that name endpoint, operation, key and cause.
//! - [`config`]: cluster.json (the measured switch and its trust inputs);
//! - [`slot`]: the local sealed slot (key, high water);
//! - [`policy`]: the replica policy from the replica's own quote;
//! - [`keyshare`]: `kms.Replica/GetClusterKey`, server and joiner ([`keywire`]: its reply);
//! - [`replica`]: the replica's state and the rules that move it; readiness;
//! - [`sync`]: the threads that talk to etcd.
//!
//! `envelope` and `etcd` depend on external crates only (no `crate::` paths), so the
//! integration tests and the fuzz targets compile them by path.

pub mod config;
// Some of their API serves only the integration tests and the fuzz targets (which compile
// them by path).
#[allow(dead_code)]
pub mod envelope;
#[allow(dead_code)]
pub mod etcd;
pub mod keyshare;
pub mod keywire;
pub mod policy;
pub mod replica;
pub mod slot;
pub mod sync;
