//! dr-k8s's integration tests: against dr-k8s-testkit's API server on
//! loopback (a stand-in: no kube-apiserver installs here), reached through a
//! kubeconfig as a user's would be.
//!
//! One binary, each file a module.

mod common;

mod apply;
mod cluster;
mod drain;
mod guard;
mod hooks;
mod lease;
mod logs;
mod namespace;
mod patch;
mod pods;
mod replace;
mod resources;
mod rollout;
mod scale;
