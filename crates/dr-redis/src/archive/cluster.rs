//! A Redis Cluster's archive: one [`CommandArchiver`] per shard
//! ([`ClusterArchiver`]), and its point-in-time restore into a Cluster
//! ([`ClusterArchiveRestore`]).
//!
//! Each shard's archive is a component of its own, named after the
//! cluster's and the first slot the shard serves
//! ([`ClusterArchiver::shard_component`]); the cluster's own archive holds
//! one marker per shard, `shard-<first slot>`, whose text lists its slots,
//! so that a restore finds every shard from the cluster's name alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dr_core::{
    ArchiveSink, ArchiveSource, Capabilities, Capability, ComponentId, JournalSink, Operation,
    RecoveryReport, RecoveryTarget, Restore, RestoreRequest, Rpo, SegmentName, SnapshotSink,
    Timeline, async_trait,
};
use futures_util::future::try_join_all;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::archiver::{ArchiverStop, CommandArchiver};
use super::replay::{ArchiveRestore, archive_end};
use crate::cluster::snapshot::cluster_layout;
use crate::error::Error;
use crate::fetch::RedisServer;
use crate::restore::{cluster_has_keys, write_file_into_cluster};

/// What a shard marker's name starts with.
const SHARD_PREFIX: &str = "shard-";

/// Archives every shard of a Redis Cluster: one [`CommandArchiver`] per
/// master, its replicas the candidates that continue its history after a
/// failover, each shard in an archive of its own.
///
/// The shards are those of the layout when the archiver starts: a
/// resharding (slots moved between masters) needs the archiver started
/// again, and a restore to a time before it still replays the old layout's
/// shards.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_redis::{ClusterArchiver, RedisServer};
///
/// let archiver = ClusterArchiver::new("redis/cache".parse()?, RedisServer::new("10.0.0.5", 6379));
/// let (_stop, stopped) = tokio::sync::watch::channel(false);
/// let journals = repo.segment_journals();
/// let journals = journals.as_ref().map(|j| j as &dyn dr_core::JournalSink);
/// for (shard, stop) in archiver.run(repo, journals, repo, stopped).await? {
///     println!("{shard}: archived up to offset {}", stop.archived.offset);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterArchiver {
    component: ComponentId,
    seed: RedisServer,
    interval: Option<Duration>,
    reconnect_for: Option<Duration>,
}

/// One shard's archiver, as [`ClusterArchiver::shards`] sets it up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShardArchive {
    /// The shard's archive.
    pub component: ComponentId,
    /// The slot ranges it serves (inclusive).
    pub slots: Vec<(u16, u16)>,
    /// Its master, `host:port`.
    pub master: String,
    /// Its archiver: the master, its replicas as candidates.
    pub archiver: CommandArchiver,
}

impl ClusterArchiver {
    /// Archives the shards of the Cluster `seed` belongs to, as archives
    /// named after `component`.
    pub fn new(component: ComponentId, seed: RedisServer) -> Self {
        Self {
            component,
            seed,
            interval: None,
            reconnect_for: None,
        }
    }

    /// Each shard's [`CommandArchiver::interval`].
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Each shard's [`CommandArchiver::reconnect_for`].
    #[must_use]
    pub fn reconnect_for(mut self, wait: Duration) -> Self {
        self.reconnect_for = Some(wait);
        self
    }

    /// The archive of the shard of `cluster` whose first slot is
    /// `first_slot`: `<cluster>-slots-<first slot, 5 digits>`.
    ///
    /// # Errors
    /// Never for a valid `cluster`; the id's own check otherwise.
    pub fn shard_component(cluster: &ComponentId, first_slot: u16) -> dr_core::Result<ComponentId> {
        format!("{cluster}-slots-{first_slot:05}").parse()
    }

    /// The shards as the Cluster's layout has them now, each with its
    /// archiver; records each in the cluster's archive (a marker that a
    /// restore finds).
    ///
    /// # Errors
    /// The layout unreadable, a slot unserved or a master failing; the
    /// store's.
    pub async fn shards(&self, archive: &dyn ArchiveSink) -> dr_core::Result<Vec<ShardArchive>> {
        let layout = cluster_layout(&self.seed).await?;
        let mut shards = Vec::new();
        for master in layout.masters() {
            let Some(&(first, _)) = master.slots.first() else {
                continue;
            };
            let component = Self::shard_component(&self.component, first)?;
            let candidates = layout
                .replicas_of(&master.id)
                .map(|replica| self.seed.at(&replica.addr))
                .collect::<crate::Result<Vec<_>>>()?;
            let mut archiver = CommandArchiver::new(component.clone(), self.seed.at(&master.addr)?)
                .candidates(candidates);
            if let Some(interval) = self.interval {
                archiver = archiver.interval(interval);
            }
            if let Some(wait) = self.reconnect_for {
                archiver = archiver.reconnect_for(wait);
            }
            record_shard(archive, &self.component, first, &master.slots).await?;
            shards.push(ShardArchive {
                component,
                slots: master.slots.clone(),
                master: master.addr.clone(),
                archiver,
            });
        }
        Ok(shards)
    }

    /// Runs every shard's archiver, each continuing its archive from
    /// where it ends ([`archive_end`]), until `stop` says `true`; where each
    /// stands then. The first that fails stops them all with its error.
    ///
    /// # Errors
    /// As [`ClusterArchiver::shards`] and [`CommandArchiver::run`].
    pub async fn run<A>(
        &self,
        archive: &A,
        journals: Option<&dyn JournalSink>,
        snapshots: &dyn SnapshotSink,
        stop: watch::Receiver<bool>,
    ) -> dr_core::Result<Vec<(ComponentId, ArchiverStop)>>
    where
        A: ArchiveSink + ArchiveSource,
    {
        let shards = self.shards(archive).await?;
        let runs = shards.into_iter().map(|shard| {
            let stop = stop.clone();
            async move {
                let from = archive_end(archive, &shard.component)
                    .await?
                    .map(|(point, _)| point);
                let stopped = shard
                    .archiver
                    .run(archive, journals, snapshots, from, stop)
                    .await?;
                Ok::<_, dr_core::Error>((shard.component, stopped))
            }
        });
        try_join_all(runs).await
    }
}

/// Records the shard of `cluster` starting at `first` in the cluster's
/// archive; one recorded already stands.
async fn record_shard(
    archive: &dyn ArchiveSink,
    cluster: &ComponentId,
    first: u16,
    slots: &[(u16, u16)],
) -> dr_core::Result<()> {
    let ranges: Vec<String> = slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    let text = format!("slots {}\n", ranges.join(" "));
    let name: SegmentName = format!("{SHARD_PREFIX}{first:05}").parse()?;
    match archive
        .put_segment(cluster, &name, &mut text.as_bytes())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == dr_core::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// One shard of a Cluster's archive, as [`ClusterArchiver`] recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchivedShard {
    /// The shard's own archive.
    pub component: ComponentId,
    /// The slot ranges it served when recorded (inclusive).
    pub slots: Vec<(u16, u16)>,
}

/// The shards recorded in the archive of the Cluster `cluster`
/// ([`ClusterArchiver`]), by first slot; none for an archive no
/// `ClusterArchiver` wrote.
///
/// # Errors
/// The store's; a marker that does not read as slot ranges.
pub async fn archived_shards(
    archive: &dyn ArchiveSource,
    cluster: &ComponentId,
) -> dr_core::Result<Vec<ArchivedShard>> {
    let mut shards = Vec::new();
    for name in archive.segments(cluster, SHARD_PREFIX).await? {
        let Some(first) = name
            .as_str()
            .strip_prefix(SHARD_PREFIX)
            .and_then(|n| n.parse::<u16>().ok())
        else {
            continue;
        };
        let what = || format!("shard marker {name} of {cluster}");
        let mut text = String::new();
        archive
            .open_segment(cluster, &name)
            .await?
            .read_to_string(&mut text)
            .await
            .map_err(|e| dr_core::Error::corrupt(what(), format!("it does not read back: {e}")))?;
        let slots = text
            .trim()
            .strip_prefix("slots ")
            .map(|ranges| {
                ranges
                    .split(' ')
                    .map(|range| {
                        let (a, b) = range.split_once('-')?;
                        Some((a.parse().ok()?, b.parse().ok()?))
                    })
                    .collect::<Option<Vec<(u16, u16)>>>()
            })
            .and_then(|slots| slots.filter(|s| s.first().is_some_and(|(a, _)| *a == first)))
            .ok_or_else(|| {
                dr_core::Error::corrupt(what(), format!("{text:?} does not read as its slots"))
            })?;
        shards.push(ArchivedShard {
            component: ClusterArchiver::shard_component(cluster, first)?,
            slots,
        });
    }
    Ok(shards)
}

/// Restores a Cluster to a point in time from its shards' archives
/// ([`ClusterArchiver`]), into an empty Cluster (any number of masters:
/// keys go to their slots' masters as the target's layout has them).
///
/// A Cluster node cannot replicate from a master outside its cluster, so
/// each shard is replayed on a **staging server** (standalone, empty, able
/// to read the snapshots' RDB version) exactly as [`ArchiveRestore`] does,
/// fetched from it as an RDB file (in the scratch directory, checked), and
/// written into the Cluster as `RESTORE`s, keys expired by then left out.
/// Every shard's snapshot and archive are checked to reach the target
/// before anything is written, and the Cluster must hold no key.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository, at: jiff::Timestamp) -> dr_core::Result<()> {
/// use dr_core::{Objectives, RecoveryTarget, Restore, RestoreRequest};
/// use dr_redis::{ClusterArchiveRestore, RedisServer};
///
/// let restore = ClusterArchiveRestore::new(
///     "redis/cache".parse()?,
///     RedisServer::new("10.0.1.5", 6379),
///     RedisServer::new("127.0.0.1", 6390),
/// );
/// let target = RecoveryTarget::Time(at);
/// let objectives = Objectives::new("5m".parse()?, "1m".parse()?);
/// let request = RestoreRequest::new(repo, &target, objectives).archive(repo);
/// println!("{}", restore.restore(request).await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterArchiveRestore {
    component: ComponentId,
    seed: RedisServer,
    staging: RedisServer,
    scratch: PathBuf,
    listen: SocketAddr,
    advertise: Option<String>,
    wait: Duration,
}

impl ClusterArchiveRestore {
    /// Restores the cluster archived as `component` into the empty Cluster
    /// `seed` belongs to, replaying each shard on `staging`; RDB files go
    /// to the system's temporary directory.
    pub fn new(component: ComponentId, seed: RedisServer, staging: RedisServer) -> Self {
        Self {
            component,
            seed,
            staging,
            scratch: std::env::temp_dir(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            wait: Duration::from_secs(600),
        }
    }

    /// Where each shard's RDB file is written between the staging server
    /// and the Cluster (one at a time; removed after).
    #[must_use]
    pub fn scratch(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch = dir.into();
        self
    }

    /// [`ArchiveRestore::serve_on`], for the staging server.
    #[must_use]
    pub fn serve_on(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// [`ArchiveRestore::advertise`], for the staging server.
    #[must_use]
    pub fn advertise(mut self, host: impl Into<String>) -> Self {
        self.advertise = Some(host.into());
        self
    }

    /// [`ArchiveRestore::wait`], for each shard.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    fn shard_restore(&self, shard: &ArchivedShard) -> ArchiveRestore {
        let first_slot = shard.slots.first().map_or(0, |(a, _)| *a);
        let restore = ArchiveRestore::new(shard.component.clone(), self.staging.clone())
            .cluster_snapshots(self.component.clone(), first_slot)
            .serve_on(self.listen)
            .wait(self.wait);
        match &self.advertise {
            Some(host) => restore.advertise(host.clone()),
            None => restore,
        }
    }
}

#[async_trait]
impl Restore for ClusterArchiveRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with(Capability::PointInTime)
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        let what = format!("point-in-time restore of the Cluster {}", self.component);
        if !matches!(
            request.target,
            RecoveryTarget::Time(_) | RecoveryTarget::Latest
        ) {
            return Err(dr_core::Error::invalid(
                &what,
                format!(
                    "{:?}: a Cluster restores to a time or the latest point (each shard has \
                     offsets of its own)",
                    request.target
                ),
            ));
        }
        let archive = request.archive.ok_or_else(|| {
            dr_core::Error::invalid(
                &what,
                "it needs the command archive (RestoreRequest::archive)",
            )
        })?;
        let mut timeline = Timeline::start_now();
        let shards = archived_shards(archive, &self.component).await?;
        if shards.is_empty() {
            return Err(dr_core::Error::not_found(format!(
                "a shard of the Cluster archive {} (a ClusterArchiver records each)",
                self.component
            )));
        }
        timeline
            .step("check every shard's snapshot and archive", async {
                for shard in &shards {
                    self.shard_restore(shard).check(&request).await?;
                }
                Ok::<_, dr_core::Error>(())
            })
            .await?;
        if cluster_has_keys(&self.seed).await? {
            return Err(Error::WrongTarget {
                addr: format!("the Cluster of {}", self.seed.addr()),
                reason: "it holds keys: a point-in-time restore replaces the whole data set, so \
                         it goes into an empty Cluster"
                    .into(),
            }
            .into());
        }
        let mut worst: Option<Rpo> = None;
        let mut restored = 0;
        for archived in &shards {
            let shard = &archived.component;
            let slots: Vec<String> = archived
                .slots
                .iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect();
            let slots = slots.join(" ");
            let file = self
                .scratch
                .join(format!("drkit-pitr-{}-{shard}.rdb", std::process::id()).replace('/', "_"));
            let replayed = timeline
                .step(
                    format!("replay {shard} (slots {slots}) on the staging server"),
                    self.shard_restore(archived)
                        .into_file(&file)
                        .replay(request),
                )
                .await;
            let written = match replayed {
                Ok((report, Some(details))) => {
                    worst = worst.max(report.data_loss);
                    timeline
                        .step(
                            format!("write {shard}'s keys into the Cluster"),
                            // Found empty; since then only other slots' keys.
                            write_file_into_cluster(&self.seed, &file, &details, &request, true),
                        )
                        .await
                }
                Ok((_, None)) => Err(dr_core::Error::invalid(&what, "no RDB file was written")),
                Err(e) => Err(e),
            };
            tokio::fs::remove_file(&file).await.ok();
            restored += written?.restored;
        }
        timeline.mark(format!(
            "restored {restored} keys from {} shards",
            shards.len()
        ))?;
        let mut report = RecoveryReport::new(
            self.component.clone(),
            Operation::Restore,
            request.objectives,
            timeline,
        );
        if let Some(at) = request.incident_at {
            report = report.with_incident_at(at);
        }
        Ok(match worst {
            Some(lost) => report.with_data_loss(lost),
            None => report,
        })
    }
}
