//! Cluster mode: KMS replicas sharing one state, kept encrypted and authenticated in etcd
//! under a cluster key that only attested replicas hold.
//!
//! - `config`: cluster.json (the measured switch and its trust inputs);
//! - `slot`: the local sealed slot (key, high water);
//! - `policy`: the replica policy from the replica's own quote;
//! - `keyshare`: `kms.Replica/GetClusterKey`, server and joiner;
//! - `replica`: the replica's state and the rules that move it; readiness;
//! - `sync`: the threads that talk to etcd.

pub mod config;
pub mod keyshare;
pub mod policy;
pub mod replica;
pub mod slot;
pub mod sync;
