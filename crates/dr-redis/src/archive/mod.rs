//! Continuous archiving of a master's replication stream: its segments.

pub(crate) mod segment;
