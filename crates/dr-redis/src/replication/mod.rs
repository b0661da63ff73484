//! Following a master as a replica does: the stream of its writes, split
//! into commands with their replication offsets.

pub(crate) mod commands;
pub(crate) mod link;
