//! [`ClusterSnapshot`] (dr-core `Backup`): every shard of a Redis Cluster
//! at once, each from a replica where one is in sync (so that masters do
//! not fork), with the layout in the same snapshot; optionally with writes
//! paused on every master around the forks, for one consistent cut.

use std::time::{Duration, Instant};

use dr_core::{
    Backup, BackupReport, BackupRequest, Capabilities, ComponentId, CutHints, Manifest,
    RecoveryPoint, SnapshotDetails, SnapshotWriter, StreamName, Timeline, async_trait,
};
use futures_util::future::{join_all, try_join_all};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::layout::ClusterLayout;
use crate::error::{Error, Result};
use crate::fetch::conn::{Conn, Reply};
use crate::fetch::{Framing, RdbTransfer, RedisServer, info, info_field};
use crate::pieces::{self, PieceReader};
use crate::rdb::verify::RdbSummary;
use crate::snapshot::{PIPE_PIECES, READ_AHEAD, RdbSnapshotDetails, pump};

/// One shard of a cluster snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ShardSnapshot {
    /// The master's node id.
    pub master_id: String,
    /// The node the RDB came from (a replica of it, or the master).
    pub source: String,
    /// The stream its RDB is stored in.
    pub stream: String,
    /// The replication id and offset of its `+FULLRESYNC`.
    pub replication_id: String,
    /// The offset.
    pub offset: u64,
    /// When it forked.
    pub forked_at: Timestamp,
    /// The RDB's details, as a standalone snapshot records them.
    pub rdb: RdbSnapshotDetails,
}

/// What a cluster snapshot records beside its streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterSnapshotDetails {
    /// The cluster's nodes, roles and slots when the snapshot began.
    pub layout: ClusterLayout,
    /// One per master, in slot order.
    pub shards: Vec<ShardSnapshot>,
    /// How long writes were paused on every master for a consistent cut,
    /// in milliseconds; `None`: not paused, and the shards' cuts are not
    /// one instant (each is its own fork's).
    pub paused_ms: Option<u64>,
}

impl SnapshotDetails for ClusterSnapshotDetails {
    const KEY: &'static str = "redis.cluster";
}

impl ClusterSnapshotDetails {
    /// The details cluster snapshot `manifest` records.
    ///
    /// # Errors
    /// [`dr_core::Error::Corrupt`] if it records none or they do not read.
    pub fn of(manifest: &Manifest) -> dr_core::Result<Self> {
        manifest.details()?.ok_or_else(|| {
            dr_core::Error::corrupt(
                format!("snapshot {}", manifest.id),
                format!(
                    "not a cluster snapshot: it records no {} details",
                    Self::KEY
                ),
            )
        })
    }

    /// Keys in every shard.
    pub fn keys(&self) -> u64 {
        self.shards.iter().map(|s| s.rdb.counts.keys()).sum()
    }
}

/// Backs up every shard of a Redis Cluster into one snapshot.
///
/// The layout comes from `CLUSTER NODES` on the seed. Each shard's RDB is
/// fetched over the replication protocol, all at once, from a replica whose
/// link to its master is up (else from the master). Without a pause the
/// shards' cuts are each their own fork's, moments apart: a write spanning
/// shards may be in one and not the other, which the details say
/// (`paused_ms: None`). With [`ClusterSnapshot::pause_writes`], every master
/// pauses writes (`CLIENT PAUSE … WRITE`), each chosen replica catches up
/// with its master, every source forks, and the pause ends as soon as all
/// have answered `+FULLRESYNC`; its length is recorded. A source's
/// `repl-diskless-sync-delay` (5 s by default, for diskless transfers)
/// passes before it forks and so adds to the pause.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use std::time::Duration;
/// use dr_core::BackupExt;
/// use dr_redis::{ClusterSnapshot, ClusterSnapshotDetails, RedisServer};
///
/// let seed = RedisServer::new("10.0.0.8", 7000).auth(None, "secret");
/// let snapshot = ClusterSnapshot::new("redis/cluster".parse()?, seed)
///     .pause_writes(Duration::from_secs(10));
/// let report = snapshot.backup_to(repo).await?;
/// let details = ClusterSnapshotDetails::of(&report.manifest)?;
/// println!("{} shards, writes paused {:?} ms", details.shards.len(), details.paused_ms);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    component: ComponentId,
    seed: RedisServer,
    pause: Option<Duration>,
    from_replicas: bool,
}

impl ClusterSnapshot {
    /// Snapshots of the cluster `seed` belongs to (every node is reached
    /// with the seed's credentials and TLS settings), without a pause.
    pub fn new(component: ComponentId, seed: RedisServer) -> Self {
        Self {
            component,
            seed,
            pause: None,
            from_replicas: true,
        }
    }

    /// Pauses writes on every master around the forks, for a consistent
    /// cut; `at_most` is the pause's own timeout, which ends it should this
    /// process die.
    #[must_use]
    pub fn pause_writes(mut self, at_most: Duration) -> Self {
        self.pause = Some(at_most);
        self
    }

    /// Fetches from the masters themselves, even where a replica is in sync.
    #[must_use]
    pub fn from_masters(mut self) -> Self {
        self.from_replicas = false;
        self
    }

    /// The cluster's layout, from the seed.
    ///
    /// # Errors
    /// The seed is unreachable, refuses, or is not a cluster node.
    pub async fn layout(&self) -> Result<ClusterLayout> {
        cluster_layout(&self.seed).await
    }

    /// The node each master's RDB comes from, in the layout's master order.
    async fn sources(&self, layout: &ClusterLayout) -> Result<Vec<RedisServer>> {
        let mut sources = Vec::new();
        for master in layout.masters() {
            let mut chosen = None;
            if self.from_replicas {
                // Where the master stands now: a replica in sync reaches it
                // within a moment (a link that is up says nothing of that).
                let master_offset = match self.seed.at(&master.addr)?.connect().await {
                    Ok((mut conn, _)) => {
                        info_field(&info(&mut conn, "replication").await?, "master_repl_offset")
                            .and_then(|o| o.parse::<u64>().ok())
                    }
                    Err(_) => None,
                };
                for replica in layout.replicas_of(&master.id).filter(|r| !r.failing) {
                    let server = self.seed.at(&replica.addr)?;
                    let Ok((mut conn, _)) = server.connect().await else {
                        continue;
                    };
                    let replication = info(&mut conn, "replication").await?;
                    if info_field(&replication, "master_link_status") != Some("up") {
                        continue;
                    }
                    let in_sync = match master_offset {
                        Some(offset) => caught_up(&server, offset, IN_SYNC_WITHIN).await.is_ok(),
                        None => true,
                    };
                    if in_sync {
                        chosen = Some(server);
                        break;
                    }
                }
            }
            sources.push(match chosen {
                Some(server) => server,
                None => self.seed.at(&master.addr)?,
            });
        }
        Ok(sources)
    }
}

/// `CLUSTER NODES` of the cluster `seed` belongs to, checked: every slot
/// served, no master failing.
pub(crate) async fn cluster_layout(seed: &RedisServer) -> Result<ClusterLayout> {
    let (layout, addr) = read_layout(seed).await?;
    let uncovered = layout.uncovered();
    if !uncovered.is_empty() {
        let ranges: Vec<String> = uncovered.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        return Err(Error::WrongTarget {
            addr,
            reason: format!("no master serves slots {}", ranges.join(", ")),
        });
    }
    if let Some(failing) = layout.masters().find(|m| m.failing) {
        return Err(Error::WrongTarget {
            addr,
            reason: format!(
                "master {} ({}) is failing: wait for its failover",
                failing.id, failing.addr
            ),
        });
    }
    Ok(layout)
}

/// `CLUSTER NODES` as the seed sees it, corrected by each reachable node's
/// word on itself, unchecked; and the seed's address.
pub(crate) async fn read_layout(seed: &RedisServer) -> Result<(ClusterLayout, String)> {
    let (mut conn, _) = seed.connect().await?;
    let addr = conn.addr().to_owned();
    let text = match conn.call("CLUSTER NODES", &[b"CLUSTER", b"NODES"]).await {
        Ok(Reply::Bulk(Some(text))) => String::from_utf8_lossy(&text).into_owned(),
        Ok(other) => {
            return Err(Error::NotRedis {
                addr,
                reason: format!("CLUSTER NODES answered {other:?}"),
            });
        }
        Err(Error::ServerRefused { message, .. })
            if message.contains("cluster support disabled") =>
        {
            return Err(Error::WrongTarget {
                addr,
                reason: "it is not a Cluster node (cluster support disabled)".into(),
            });
        }
        Err(e) => return Err(e),
    };
    let mut layout = ClusterLayout::parse(&text, &addr)?;
    // Each node's word on itself: the seed may not have heard yet.
    let known: Vec<(String, bool)> = layout
        .nodes
        .iter()
        .map(|n| (n.addr.clone(), n.failing))
        .collect();
    for (node_addr, failing) in known {
        if failing || node_addr == addr {
            continue;
        }
        let Ok((mut conn, _)) = seed.at(&node_addr)?.connect().await else {
            continue;
        };
        if let Ok(Reply::Bulk(Some(own))) =
            conn.call("CLUSTER NODES", &[b"CLUSTER", b"NODES"]).await
        {
            layout.update_from_self(&String::from_utf8_lossy(&own), &node_addr)?;
        }
    }
    layout.update_from_self(&text, &addr)?;
    Ok((layout, addr))
}

/// Writes paused on every master, until [`Pause::end`].
struct Pause {
    masters: Vec<Conn>,
    began: Instant,
}

impl Pause {
    async fn begin(
        seed: &RedisServer,
        layout: &ClusterLayout,
        at_most: Duration,
    ) -> Result<(Self, Vec<u64>)> {
        let mut pause = Self {
            masters: Vec::new(),
            began: Instant::now(),
        };
        for master in layout.masters() {
            let (conn, _) = seed.at(&master.addr)?.connect().await?;
            pause.masters.push(conn);
        }
        let ms = at_most.as_millis().max(1).to_string();
        pause.began = Instant::now();
        let mut offsets = Vec::new();
        for conn in &mut pause.masters {
            if let Err(e) = conn
                .call(
                    "CLIENT PAUSE",
                    &[b"CLIENT", b"PAUSE", ms.as_bytes(), b"WRITE"],
                )
                .await
            {
                pause.end().await;
                return Err(e);
            }
        }
        for conn in &mut pause.masters {
            let replication = match info(conn, "replication").await {
                Ok(text) => text,
                Err(e) => {
                    pause.end().await;
                    return Err(e);
                }
            };
            offsets.push(
                info_field(&replication, "master_repl_offset")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            );
        }
        Ok((pause, offsets))
    }

    /// Unpauses every master (best effort: the pause's own timeout ends it
    /// anyway) and says how long it lasted.
    async fn end(&mut self) -> Duration {
        let lasted = self.began.elapsed();
        for conn in &mut self.masters {
            conn.call("CLIENT UNPAUSE", &[b"CLIENT", b"UNPAUSE"])
                .await
                .ok();
        }
        lasted
    }
}

/// How long a replica may take to reach where its master stood for the
/// snapshot to come from it rather than from the master.
const IN_SYNC_WITHIN: Duration = Duration::from_secs(1);

/// Waits until `replica` has applied its master's stream up to `offset`.
async fn caught_up(replica: &RedisServer, offset: u64, within: Duration) -> Result<()> {
    let (mut conn, _) = replica.connect().await?;
    let deadline = Instant::now() + within;
    loop {
        let replication = info(&mut conn, "replication").await?;
        let at: u64 = info_field(&replication, "slave_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if at >= offset || info_field(&replication, "role") == Some("master") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::WrongTarget {
                addr: replica.addr(),
                reason: format!(
                    "the replica stands at offset {at}, its master at {offset}, and did not catch up within the pause"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stores each transfer as its stream, all at once, each through the same
/// pump as a server's snapshot (framed, checksummed, cut at its keys);
/// their summaries and framings once all are done.
async fn store_all_checked(
    writer: &mut dyn SnapshotWriter,
    transfers: Vec<(StreamName, RdbTransfer)>,
) -> dr_core::Result<Vec<(RdbSummary, &'static str)>> {
    let mut fetches = Vec::new();
    let mut outs = Vec::new();
    for (name, transfer) in transfers {
        let (pipe_in, pipe_out) = pieces::pipe(PIPE_PIECES);
        let (publisher, hints) = CutHints::pair();
        outs.push((name, pipe_out, hints));
        fetches.push(async move {
            let mut ahead = transfer.read_ahead(READ_AHEAD);
            let summary = pump(&mut ahead, pipe_in, publisher).await?;
            let framing = match ahead.finish().await?.framing() {
                Some(Framing::EofMark(_)) => "diskless",
                _ => "length",
            };
            Ok::<_, Error>((summary, framing))
        });
    }
    let store = async {
        let mut pipes: Vec<(StreamName, PieceReader)> = Vec::new();
        let mut all_hints = Vec::new();
        for (name, out, hints) in outs {
            pipes.push((name, out));
            all_hints.push(hints);
        }
        let streams = pipes
            .iter_mut()
            .zip(all_hints)
            .map(|((name, out), hints)| {
                let out: &mut (dyn tokio::io::AsyncRead + Send + Unpin) = out;
                (name.clone(), out, Some(hints))
            })
            .collect();
        let stored = writer.add_streams_hinted(streams).await;
        // Dropped here: a fetch still writing learns the store has ended.
        drop(pipes);
        stored
    };
    let (summaries, stored) = tokio::join!(join_all(fetches), store);
    stored?;
    summaries
        .into_iter()
        .map(|s| s.map_err(dr_core::Error::from))
        .collect()
}

#[async_trait]
impl Backup for ClusterSnapshot {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn backup(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let mut timeline = Timeline::start_now();
        let layout = timeline
            .step("read the layout (CLUSTER NODES)", async {
                Ok::<_, dr_core::Error>(self.layout().await?)
            })
            .await?;
        let sources = timeline
            .step("choose a source per shard", async {
                Ok::<_, dr_core::Error>(self.sources(&layout).await?)
            })
            .await?;
        let started = Timestamp::now();
        let (transfers, paused) = timeline
            .step("fork every shard (PSYNC)", async {
                Ok::<_, dr_core::Error>(self.fork_all(&layout, &sources).await?)
            })
            .await?;
        let at = match paused {
            Some(_) => started,
            None => transfers.iter().map(|(_, at)| *at).min().unwrap_or(started),
        };
        let point = RecoveryPoint::new(at);
        let mut writer = request.sink.begin(&self.component, at).await?;
        let masters: Vec<&super::layout::ClusterNode> = layout.masters().collect();
        let mut named = Vec::new();
        let mut shards = Vec::new();
        for ((transfer, forked_at), (master, source)) in
            transfers.into_iter().zip(masters.iter().zip(&sources))
        {
            let stream = format!("shards/{}.rdb", master.id);
            named.push((stream.parse::<StreamName>()?, transfer));
            shards.push((master.id.clone(), source.addr(), stream, forked_at));
        }
        let meta: Vec<(String, u64, String)> = named
            .iter()
            .map(|(_, t)| {
                (
                    t.replication_id().to_owned(),
                    t.offset(),
                    t.server_version().to_owned(),
                )
            })
            .collect();
        let stored = timeline
            .step(
                "fetch and store every shard's RDB",
                store_all_checked(writer.as_mut(), named),
            )
            .await;
        let summaries = match stored {
            Ok(summaries) => summaries,
            Err(error) => {
                writer.abort().await.ok();
                return Err(error);
            }
        };
        let shards = shards
            .into_iter()
            .zip(meta)
            .zip(summaries)
            .map(
                |(
                    ((master_id, source, stream, forked_at), (replication_id, offset, version)),
                    (summary, framing),
                )| {
                    ShardSnapshot {
                        master_id,
                        source,
                        stream,
                        replication_id,
                        offset,
                        forked_at,
                        rdb: RdbSnapshotDetails::of_summary(summary, version, framing),
                    }
                },
            )
            .collect();
        let details = ClusterSnapshotDetails {
            layout,
            shards,
            paused_ms: paused.map(|d| d.as_millis() as u64),
        };
        crate::snapshot::commit(writer, timeline, &request, point, &details).await
    }
}

impl ClusterSnapshot {
    /// Starts every shard's transfer at once (under a pause if asked):
    /// each with when it forked; and how long writes were paused.
    async fn fork_all(
        &self,
        layout: &ClusterLayout,
        sources: &[RedisServer],
    ) -> Result<(Vec<(RdbTransfer, Timestamp)>, Option<Duration>)> {
        let mut pause = None;
        if let Some(at_most) = self.pause {
            let (paused, offsets) = Pause::begin(&self.seed, layout, at_most).await?;
            let masters: Vec<&super::layout::ClusterNode> = layout.masters().collect();
            let waits = sources.iter().zip(&offsets).zip(&masters).map(
                |((source, offset), master)| async move {
                    if source.addr() == self.seed.at(&master.addr)?.addr() {
                        return Ok(());
                    }
                    caught_up(source, *offset, at_most).await
                },
            );
            let mut paused = paused;
            if let Err(e) = try_join_all(waits).await {
                paused.end().await;
                return Err(e);
            }
            pause = Some(paused);
        }
        let forks = join_all(sources.iter().map(|source| async move {
            let transfer = source.begin_rdb().await?;
            Ok::<_, Error>((transfer, Timestamp::now()))
        }))
        .await;
        let paused = match pause.as_mut() {
            Some(pause) => Some(pause.end().await),
            None => None,
        };
        let transfers = forks.into_iter().collect::<Result<Vec<_>>>()?;
        Ok((transfers, paused))
    }
}
