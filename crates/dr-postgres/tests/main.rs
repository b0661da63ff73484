//! dr-postgres's integration tests, against real PostgreSQL servers.
//!
//! One binary, each file a module: one link instead of one per file, and one
//! copy of the dependencies on disk. nextest still runs each test in its own
//! process.

mod common;

mod archiver;
mod failover;
mod logical;
mod pitr;
mod replication;
mod wal_records;
