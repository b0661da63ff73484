//! dr-storage's integration tests: repositories on local disk and on a real
//! S3 server.
//!
//! One binary, each file a module: one link instead of one per file, and one
//! copy of the dependencies on disk. nextest still runs each test in its own
//! process.

mod common;

mod conformance;
mod crash;
mod location;
mod locks;
mod maintenance;
mod repository;
