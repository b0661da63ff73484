//! dr-redis's integration tests: against real Redis servers (7.0 and 8.2),
//! Clusters and Sentinels, and on RDB files.
//!
//! One binary, each file a module: one link instead of one per file, and one
//! copy of the dependencies on disk. nextest still runs each test in its own
//! process.

mod common;

mod archiver;
mod cluster;
mod cluster_failover;
mod cluster_pitr;
mod failover;
mod fetch;
mod file_mode;
mod files;
mod logical;
mod pitr;
mod real_server;
mod replication;
mod restore;
mod sentinel;
mod snapshot;
mod streaming;
mod versions;
