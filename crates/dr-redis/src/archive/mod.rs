//! Continuous archiving of a master's replication stream: the archiver and
//! its segments.

pub(crate) mod archiver;
pub(crate) mod cluster;
pub(crate) mod replay;
pub(crate) mod segment;
