//! Redis Cluster: its layout, snapshots of every shard at once, and the
//! rebuild of a whole cluster from one.

pub(crate) mod failover;
pub(crate) mod layout;
pub(crate) mod rebuild;
pub(crate) mod route;
pub(crate) mod snapshot;
