//! Cluster mode: KMS replicas sharing one state, kept encrypted and authenticated in etcd
//! under a cluster key that only attested replicas hold.

pub mod config;
