//! One module per command; each takes what it needs resolved, so that its
//! logic reads as the library calls it makes.

pub(crate) mod agent;
pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod dump;
pub(crate) mod failover;
pub(crate) mod init;
pub(crate) mod k8s;
pub(crate) mod kubernetes;
pub(crate) mod livekit;
pub(crate) mod maintenance;
pub(crate) mod redis;
pub(crate) mod report;
pub(crate) mod resources;
pub(crate) mod restore;
pub(crate) mod snapshots;
pub(crate) mod status;
pub(crate) mod target;
pub(crate) mod wal;
