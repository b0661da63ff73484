//! `drkit`'s integration tests: its config, and the binary as an operator
//! drives it.
//!
//! One binary, each file a module: one link instead of one per file, and one
//! copy of the dependencies on disk. nextest still runs each test in its own
//! process.

mod common;

mod agent;
mod cli;
mod config;
mod dump;
mod k8s;
mod kubernetes;
mod livekit;
mod redis_components;
mod wal;
