//! dr-k8s's integration tests: against dr-k8s-testkit's API server on
//! loopback (a stand-in: no kube-apiserver installs here), reached through a
//! kubeconfig as a user's would be; or, with `DRKIT_TEST_KUBECONFIG` naming
//! a real cluster's kubeconfig (and `DRKIT_TEST_CONTEXT` its context), the
//! tests that need no control only the stand-in has run there, each in a
//! namespace of its own, and the others say they are skipped (see
//! `common`).
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
