//! dr-k8s-testkit's integration tests: the server driven by kubectl 1.32 (a client nobody here
//! wrote), and by raw HTTP for what kubectl does not show.
//!
//! One binary, each file a module: one link instead of one per file. nextest still runs each
//! test in its own process.

mod common;

mod apply;
mod crd;
mod discovery;
mod eviction;

mod fault;
mod http;
mod kubectl;
mod logs;
mod openapi;
mod rollout;
mod scheduling;
mod watch;
