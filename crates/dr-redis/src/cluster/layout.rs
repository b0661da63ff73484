//! A Redis Cluster's layout as `CLUSTER NODES` gives it: each node's id,
//! address, role and slot ranges; and the slot a key hashes to.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// A node's part in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeRole {
    /// Serves its slots.
    Master,
    /// Replicates the master with this id.
    Replica {
        /// The master's node id.
        of: String,
    },
}

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterNode {
    /// Its 40-character node id.
    pub id: String,
    /// Its client address, `host:port`.
    pub addr: String,
    /// Master or replica.
    pub role: NodeRole,
    /// The slot ranges it serves (inclusive), for a master.
    pub slots: Vec<(u16, u16)>,
    /// Whether the cluster holds it failed (`fail` or `fail?` flags), or
    /// its link is down.
    pub failing: bool,
}

impl ClusterNode {
    /// Whether it is a master.
    pub fn is_master(&self) -> bool {
        self.role == NodeRole::Master
    }

    /// Slots it serves.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
            .sum()
    }
}

/// The nodes of a cluster, as one node sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterLayout {
    /// Every node, masters in slot order first, then replicas.
    pub nodes: Vec<ClusterNode>,
}

impl ClusterLayout {
    /// Reads `CLUSTER NODES`'s answer, as the node at `addr` gave it.
    ///
    /// # Errors
    /// [`Error::NotRedis`] for a line that does not read.
    pub fn parse(text: &str, addr: &str) -> Result<Self> {
        let bad = |line: &str, why: &str| Error::NotRedis {
            addr: addr.to_owned(),
            reason: format!("CLUSTER NODES line {line:?}: {why}"),
        };
        let mut nodes = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let words: Vec<&str> = line.split(' ').collect();
            if words.len() < 8 {
                return Err(bad(line, "fewer than 8 fields"));
            }
            let id = words[0];
            if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(line, "no node id"));
            }
            // ip:port@cport[,hostname]
            let address = words[1].split(['@', ',']).next().unwrap_or_default();
            let flags: Vec<&str> = words[2].split(',').collect();
            if flags.contains(&"handshake") || flags.contains(&"noaddr") {
                continue;
            }
            let role = if flags.contains(&"master") {
                NodeRole::Master
            } else if flags.contains(&"slave") {
                if words[3].len() != 40 {
                    return Err(bad(line, "a replica without a master"));
                }
                NodeRole::Replica {
                    of: words[3].to_owned(),
                }
            } else {
                return Err(bad(line, "neither master nor replica"));
            };
            let mut slots = Vec::new();
            for range in &words[8..] {
                // [slot->-id] and [slot-<-id]: a migration under way.
                if range.starts_with('[') {
                    continue;
                }
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) if a <= b && b < SLOTS => slots.push((a, b)),
                    _ => return Err(bad(line, "a slot range that does not read")),
                }
            }
            slots.sort_unstable();
            nodes.push(ClusterNode {
                id: id.to_owned(),
                addr: address.to_owned(),
                role,
                slots,
                failing: flags.contains(&"fail")
                    || flags.contains(&"fail?")
                    || words[7] != "connected",
            });
        }
        let mut layout = Self { nodes };
        layout.sort();
        Ok(layout)
    }

    /// The masters that serve slots (the shards), in slot order. A master
    /// without slots holds none of the cluster's keys.
    pub fn masters(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes
            .iter()
            .filter(|n| n.is_master() && !n.slots.is_empty())
    }

    /// Replaces what this layout says of a node with what the node says of
    /// itself (the `myself` line of its own `CLUSTER NODES`): a node's own
    /// role and slots are news to the others until gossip carries them.
    ///
    /// # Errors
    /// [`Error::NotRedis`] if `text` does not read or has no `myself` line.
    pub(crate) fn update_from_self(&mut self, text: &str, addr: &str) -> Result<()> {
        let line = text
            .lines()
            .find(|l| {
                l.split(' ')
                    .nth(2)
                    .is_some_and(|f| f.split(',').any(|f| f == "myself"))
            })
            .ok_or_else(|| Error::NotRedis {
                addr: addr.to_owned(),
                reason: "CLUSTER NODES has no myself line".into(),
            })?;
        let own = Self::parse(line, addr)?;
        if let Some(node) = own.nodes.into_iter().next() {
            match self.nodes.iter_mut().find(|n| n.id == node.id) {
                Some(known) => {
                    known.role = node.role;
                    known.slots = node.slots;
                }
                None => self.nodes.push(node),
            }
        }
        self.sort();
        Ok(())
    }

    fn sort(&mut self) {
        self.nodes.sort_by(|a, b| {
            let key = |n: &ClusterNode| {
                (
                    !n.is_master(),
                    n.slots.is_empty(),
                    n.slots.first().copied(),
                    n.id.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
    }

    /// The replicas of the master `id`.
    pub fn replicas_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a ClusterNode> + 'a {
        self.nodes
            .iter()
            .filter(move |n| matches!(&n.role, NodeRole::Replica { of } if of == id))
    }

    /// The master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Option<&ClusterNode> {
        self.masters()
            .find(|m| m.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
    }

    /// Slots no master serves, as ranges.
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let mut covered = vec![false; usize::from(SLOTS)];
        for master in self.masters() {
            for (a, b) in &master.slots {
                covered[usize::from(*a)..=usize::from(*b)].fill(true);
            }
        }
        let mut ranges = Vec::new();
        let mut start = None;
        for (slot, &is) in covered.iter().enumerate() {
            match (is, start) {
                (false, None) => start = Some(slot as u16),
                (true, Some(s)) => {
                    ranges.push((s, slot as u16 - 1));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            ranges.push((s, SLOTS - 1));
        }
        ranges
    }
}

/// CRC-16/XMODEM, as Redis Cluster hashes keys.
const CRC16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The slot `key` belongs to: the CRC-16 of its hash tag (the part
/// between the first `{` and the next `}`, if not empty) or of the whole key.
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_as_redis_computes_them() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"somekey"), 11058);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
    }

    #[test]
    fn cluster_nodes_read() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";
        let layout = ClusterLayout::parse(text, "seed").unwrap();
        let masters: Vec<&str> = layout.masters().map(|m| m.addr.as_str()).collect();
        assert_eq!(
            masters,
            ["127.0.0.1:30001", "127.0.0.1:30002", "127.0.0.1:30003"]
        );
        assert_eq!(layout.masters().next().unwrap().slots, [(0, 5460)]);
        let replicas: Vec<&str> = layout
            .replicas_of("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
            .map(|r| r.addr.as_str())
            .collect();
        assert_eq!(replicas, ["127.0.0.1:30004"]);
        assert!(layout.uncovered().is_empty());
        assert_eq!(layout.master_of(6000).unwrap().addr, "127.0.0.1:30002");
        assert!(ClusterLayout::parse("nonsense\n", "seed").is_err());
    }
}
