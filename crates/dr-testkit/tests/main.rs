//! The test kit's own integration tests: its servers and its sweep.
//!
//! One binary, each file a module: one link instead of one per file, and one
//! copy of the dependencies on disk. nextest still runs each test in its own
//! process.

mod servers;
mod sweep;
