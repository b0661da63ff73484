//! Commands routed to a Redis Cluster's masters by their key's slot, one
//! pipeline per master, with the cluster's redirections followed: `MOVED`
//! (the slot map updated, the command sent to the new owner), `ASK` (sent
//! once to the node named, after `ASKING`), and `TRYAGAIN`, `LOADING`,
//! `BUSY`, `CLUSTERDOWN` (sent again after a pause), each command at most
//! [`MAX_TRIES`] times.

use std::time::Duration;

use bytes::Bytes;

use super::layout::{ClusterLayout, SLOTS, slot_of};
use crate::error::{Error, Result};
use crate::fetch::RedisServer;
use crate::restore::pipeline::{Answer, Expect, Pipeline, Sent};

/// How many times one command is sent before its last answer stands.
pub(crate) const MAX_TRIES: u8 = 50;

/// What a redirection or a passing refusal asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Retry {
    /// The slot lives on `addr` now.
    Moved { slot: u16, addr: String },
    /// This once, ask `addr` (the slot is migrating there).
    Ask { addr: String },
    /// The node cannot take it yet: send it again shortly.
    Later,
}

impl Retry {
    fn of(message: &str) -> Option<Self> {
        let mut words = message.split(' ');
        match words.next()? {
            "MOVED" => Some(Retry::Moved {
                slot: words.next()?.parse().ok()?,
                addr: words.next()?.to_owned(),
            }),
            "ASK" => {
                words.next()?;
                Some(Retry::Ask {
                    addr: words.next()?.to_owned(),
                })
            }
            "TRYAGAIN" | "LOADING" | "BUSY" | "CLUSTERDOWN" | "MASTERDOWN" => Some(Retry::Later),
            _ => None,
        }
    }
}

/// A pipeline per master and the slot map.
pub(crate) struct ClusterPipelines {
    seed: RedisServer,
    window: usize,
    /// For each slot, the index of its master's pipeline.
    slots: Vec<usize>,
    nodes: Vec<Pipeline>,
    addrs: Vec<String>,
    retries: Vec<(Sent, Retry)>,
}

impl ClusterPipelines {
    /// Connects to every master of `layout` (reached as `seed` is).
    ///
    /// # Errors
    /// A master is unreachable or refuses the credentials.
    pub(crate) async fn connect(
        seed: &RedisServer,
        layout: &ClusterLayout,
        window: usize,
    ) -> Result<(Self, Vec<String>)> {
        let mut this = Self {
            seed: seed.clone(),
            window,
            slots: vec![0; usize::from(SLOTS)],
            nodes: Vec::new(),
            addrs: Vec::new(),
            retries: Vec::new(),
        };
        let mut versions = Vec::new();
        for master in layout.masters() {
            let (index, version) = this.node(&master.addr).await?;
            versions.extend(version);
            for (a, b) in &master.slots {
                this.slots[usize::from(*a)..=usize::from(*b)].fill(index);
            }
        }
        Ok((this, versions))
    }

    /// The pipeline to `addr`, connected if new; the server's version when
    /// it is.
    async fn node(&mut self, addr: &str) -> Result<(usize, Option<String>)> {
        if let Some(index) = self.addrs.iter().position(|a| a == addr) {
            return Ok((index, None));
        }
        let (conn, version) = self.seed.at(addr)?.connect().await?;
        self.nodes.push(Pipeline::new(conn, self.window));
        self.addrs.push(addr.to_owned());
        Ok((self.nodes.len() - 1, Some(version)))
    }

    /// How many masters there are pipelines to.
    pub(crate) fn pipelines_count(&self) -> usize {
        self.nodes.len()
    }

    /// The pipelines, one per master.
    pub(crate) fn pipelines_mut(&mut self) -> &mut [Pipeline] {
        &mut self.nodes
    }

    /// Sends `sent` to the master of its key's slot.
    pub(crate) async fn push(
        &mut self,
        sent: Sent,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        let index = self.slots[usize::from(slot_of(&sent.key))];
        self.push_to(index, sent, answered).await?;
        self.redo(answered).await
    }

    /// Sends `sent` to every master (a function library).
    pub(crate) async fn push_everywhere(
        &mut self,
        sent: &Sent,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        for index in 0..self.nodes.len() {
            self.push_to(index, sent.clone(), answered).await?;
        }
        self.redo(answered).await
    }

    /// Writes what is gathered everywhere and reads every answer due,
    /// following redirections until none is left.
    pub(crate) async fn finish(
        &mut self,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        loop {
            for index in 0..self.nodes.len() {
                let Self { nodes, retries, .. } = self;
                let mut wrapped = wrap(retries, answered);
                nodes[index].finish(&mut wrapped).await?;
            }
            if self.retries.is_empty() {
                return Ok(());
            }
            self.redo(answered).await?;
        }
    }

    async fn push_to(
        &mut self,
        index: usize,
        sent: Sent,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        let Self { nodes, retries, .. } = self;
        let mut wrapped = wrap(retries, answered);
        nodes[index].push(sent, &mut wrapped).await
    }

    /// Sends again what was redirected or refused for now.
    async fn redo(
        &mut self,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        while !self.retries.is_empty() {
            let retries = std::mem::take(&mut self.retries);
            if retries.iter().any(|(_, r)| *r == Retry::Later) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for (mut sent, retry) in retries {
                sent.tries += 1;
                match retry {
                    Retry::Moved { slot, addr } => {
                        let (index, _) = self.node(&addr).await?;
                        if let Some(owner) = self.slots.get_mut(usize::from(slot)) {
                            *owner = index;
                        }
                        self.push_to(index, sent, answered).await?;
                    }
                    Retry::Ask { addr } => {
                        let (index, _) = self.node(&addr).await?;
                        let mut asking = Vec::with_capacity(24);
                        crate::restore::commands::encode(&mut asking, &[b"ASKING"]);
                        let ask = Sent {
                            db: sent.db,
                            key: Bytes::new(),
                            command: Bytes::from(asking),
                            expect: Expect::Step { last: false },
                            tries: MAX_TRIES,
                        };
                        self.push_to(index, ask, answered).await?;
                        self.push_to(index, sent, answered).await?;
                    }
                    Retry::Later => {
                        let index = self.slots[usize::from(slot_of(&sent.key))];
                        self.push_to(index, sent, answered).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `answered`, with redirections and passing refusals set aside in
/// `retries` while a command has tries left.
fn wrap<'a>(
    retries: &'a mut Vec<(Sent, Retry)>,
    answered: &'a mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
) -> impl FnMut(Sent, Answer) -> Result<()> + Send + 'a {
    move |sent: Sent, answer: Answer| {
        if let Answer::Refused(message) = &answer
            && sent.tries < MAX_TRIES
            && let Some(retry) = Retry::of(message)
        {
            retries.push((sent, retry));
            return Ok(());
        }
        answered(sent, answer)
    }
}

impl std::fmt::Debug for ClusterPipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPipelines")
            .field("masters", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// A cluster that refuses a restore's keys for good.
pub(crate) fn not_a_cluster_db(addr: &str, db: u64) -> Error {
    Error::WrongTarget {
        addr: addr.to_owned(),
        reason: format!("a Cluster has only database 0; the snapshot has keys in database {db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_read() {
        assert_eq!(
            Retry::of("MOVED 3999 127.0.0.1:6381"),
            Some(Retry::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            Retry::of("ASK 3999 127.0.0.1:6381"),
            Some(Retry::Ask {
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            Retry::of("LOADING Redis is loading the dataset in memory"),
            Some(Retry::Later)
        );
        assert_eq!(Retry::of("ERR wrong number of arguments"), None);
        assert_eq!(Retry::of("MOVED x"), None);
    }
}
