//! dr-livekit-testkit's integration tests: the server driven by LiveKit's own clients (the
//! Rust `livekit-api`, and the Node `livekit-server-sdk` as a child process), and by raw
//! HTTP for what the clients do not show.
//!
//! One binary, each file a module: one link instead of one per file.

mod common;

mod auth;
mod chaos;
mod metrics;
mod node;
mod rooms;
mod services;
mod webhooks;
