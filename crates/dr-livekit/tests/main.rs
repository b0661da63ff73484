//! dr-livekit against a LiveKit server: the stand-in of dr-livekit-testkit
//! (no livekit-server installs here), checked by LiveKit's own SDKs in its
//! own tests.

mod common;
mod errors;
mod failover;
mod real;
mod restore;
mod snapshot;
