//! [`RdbRestore`] (dr-core `Restore`): an RDB snapshot written into a
//! running server, key by key.
//!
//! Two passes over the stored snapshot. The first reads it whole (its
//! pieces checked, every key framed, the RDB's checksum and key counts
//! against those recorded) and asks the target which keys already exist where the
//! conflict policy needs to know: a damaged snapshot, a conflict the caller
//! asked to fail on, or a value the target cannot take is found before
//! anything is written. The second sends each key as `RESTORE … ABSTTL`
//! built from its raw bytes, pipelined; a target whose RDB version is older
//! than the snapshot's gets plain commands rebuilding each decoded value
//! instead.

pub(crate) mod commands;
mod file;
mod keys;
pub(crate) mod pipeline;

pub use self::file::RdbFileRestore;
pub(crate) use self::file::{copy_checked, fetch_to_file};
pub use self::keys::KeyPatterns;

use std::collections::HashSet;

use bytes::Bytes;
use dr_core::{
    Capabilities, ComponentId, Manifest, Operation, Progress, RecoveryReport, RecoveryTarget,
    Restore, RestoreRequest, StreamCheck, StreamName, Timeline, async_trait,
};
use jiff::Timestamp;

use self::commands::Rebuilder;
use self::pipeline::{Answer, Expect, Pipeline, Sent};
use crate::cluster::route::{ClusterPipelines, not_a_cluster_db};
use crate::cluster::snapshot::{ClusterSnapshotDetails, cluster_layout};
use crate::error::{Error, Result, printable};
use crate::fetch::RedisServer;
use crate::fetch::conn::{Conn, Reply};
use crate::rdb::decode::decode_value;
use crate::rdb::frame::{Event, KeyEntry};
use crate::rdb::reader::RdbReader;
use crate::rdb::verify::KeyCounts;
use crate::snapshot::{RDB_STREAM, RdbSnapshotDetails};

/// What a restore does with a key (or function library) the target already
/// has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Conflict {
    /// Refuse the restore before anything is written (the default).
    #[default]
    Fail,
    /// Leave the target's key as it is.
    Skip,
    /// Overwrite it with the snapshot's.
    Replace,
}

impl std::str::FromStr for Conflict {
    type Err = dr_core::Error;

    fn from_str(s: &str) -> dr_core::Result<Self> {
        match s {
            "fail" => Ok(Conflict::Fail),
            "skip" => Ok(Conflict::Skip),
            "replace" => Ok(Conflict::Replace),
            other => Err(dr_core::Error::invalid(
                "conflict policy",
                format!("{other:?} is none of fail, skip, replace"),
            )),
        }
    }
}

/// How a restore went, key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreCounts {
    /// Keys written.
    pub restored: u64,
    /// Keys left as the target had them ([`Conflict::Skip`]).
    pub kept_existing: u64,
    /// Keys whose expiry had passed by the restore: not written.
    pub expired: u64,
    /// Function libraries loaded.
    pub functions: u64,
    /// Function libraries left as the target had them.
    pub kept_functions: u64,
    /// Whether values were rebuilt from plain commands (the target's RDB
    /// version is older than the snapshot's) rather than `RESTORE`d.
    pub rebuilt: bool,
    /// Keys the restore's [`KeyPatterns`] left out.
    pub left_out: u64,
}

/// Restores RDB snapshots of a component (a server's, or a cluster's with
/// one RDB per shard) into a running Redis server or Cluster.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::{Objectives, RecoveryTarget, Restore, RestoreRequest};
/// use dr_redis::{Conflict, RdbRestore, RedisServer};
///
/// let into = RedisServer::new("10.0.0.9", 6379).auth(None, "secret");
/// let restore = RdbRestore::new("redis/sessions".parse()?, into).conflict(Conflict::Replace);
/// let target = RecoveryTarget::Latest;
/// let objectives = Objectives::new("5m".parse()?, "1m".parse()?);
/// let report = restore.restore(RestoreRequest::new(repo, &target, objectives)).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RdbRestore {
    component: ComponentId,
    into: Into,
    conflict: Conflict,
    window: usize,
    check_first: bool,
    keys: Option<KeyPatterns>,
}

/// Where a restore writes.
#[derive(Debug, Clone)]
enum Into {
    /// One standalone server.
    Server(RedisServer),
    /// A Redis Cluster, found from a seed node.
    Cluster(RedisServer),
}

impl RdbRestore {
    /// Restores snapshots of `component` into the standalone `server`,
    /// failing if any of their keys exists there.
    pub fn new(component: ComponentId, server: RedisServer) -> Self {
        Self {
            component,
            into: Into::Server(server),
            conflict: Conflict::Fail,
            window: 4,
            check_first: true,
            keys: None,
        }
    }

    /// Restores snapshots of `component` into the Redis Cluster `seed`
    /// belongs to: each key sent to the master of its slot (as the target's
    /// layout has them, whatever the snapshot's was), redirections followed,
    /// function libraries loaded on every master.
    pub fn into_cluster(component: ComponentId, seed: RedisServer) -> Self {
        Self {
            into: Into::Cluster(seed),
            ..Self::new(component, RedisServer::new("", 0))
        }
    }

    /// What to do with keys the server already has.
    #[must_use]
    pub fn conflict(mut self, conflict: Conflict) -> Self {
        self.conflict = conflict;
        self
    }

    /// How many batches of commands (each about 1 MiB) may be unanswered
    /// at once on each connection (default 4, at least 1).
    #[must_use]
    pub fn window(mut self, batches: usize) -> Self {
        self.window = batches.max(1);
        self
    }

    /// Whether the whole snapshot is read and checked (and conflicts asked
    /// about) before anything is written: yes by default. Without, the
    /// restore reads the snapshot once, writing as it goes, and checks the
    /// same things as it reads: a damaged snapshot, or a key that exists
    /// under [`Conflict::Fail`], stops it with the keys before written. A
    /// restore that must rebuild values from commands (an older target)
    /// always checks first.
    #[must_use]
    pub fn check_first(mut self, check_first: bool) -> Self {
        self.check_first = check_first;
        self
    }

    /// Writes only the keys `keys` matches (LiveKit's durable keys out of
    /// its whole Redis, say); the others are counted in
    /// [`RestoreCounts::left_out`], and function libraries are left out
    /// too. The whole snapshot is still read and checked.
    #[must_use]
    pub fn only_keys(mut self, keys: KeyPatterns) -> Self {
        self.keys = Some(keys);
        self
    }

    /// [`Restore::restore`], with the key counts.
    ///
    /// # Errors
    /// As [`Restore::restore`].
    pub async fn restore_counted(
        &self,
        request: RestoreRequest<'_>,
    ) -> dr_core::Result<(RecoveryReport, RestoreCounts)> {
        let mut timeline = Timeline::start_now();
        let manifest = choose(request.snapshots, &self.component, request.target).await?;
        let rdbs = rdb_streams(&manifest)?;
        let (mut writers, target) = timeline
            .step("connect to the target", async {
                Ok::<_, dr_core::Error>(Writers::open(&self.into, self.window).await?)
            })
            .await?;
        let libraries = if rdbs.iter().any(|r| r.details.functions > 0) {
            writers.library_names().await?
        } else {
            HashSet::new()
        };
        let mut plans = Vec::new();
        for rdb in &rdbs {
            let mut plan = Plan::new(&target, &rdb.details, self.conflict, libraries.clone())?;
            plan.keys = self.keys.clone();
            plans.push(plan);
        }

        let check_first = self.check_first || plans.iter().any(|p| p.rebuild.is_some());
        let target_has_keys = writers.has_keys().await?;
        for plan in &mut plans {
            plan.checked = check_first;
            plan.target_has_keys = target_has_keys;
        }
        let existing = if !check_first {
            Existing::default()
        } else {
            timeline
                .step("check the snapshot against the target", async {
                    let mut existing = Existing::default();
                    for (rdb, plan) in rdbs.iter().zip(&plans) {
                        // The stored pieces are checked on every read; an RDB
                        // with a checksum is checked end to end by it (order
                        // included), so the stream's SHA-256 adds nothing. One
                        // without (rdbchecksum no) is held to its digest.
                        let check_stream = if rdb.details.checksum.is_some() {
                            StreamCheck::Pieces
                        } else {
                            StreamCheck::Digest
                        };
                        let stream = request
                            .snapshots
                            .open_stream_with(&manifest.id, &rdb.stream, check_stream)
                            .await?;
                        check(&mut writers, stream, plan, rdb, &request, &mut existing).await?;
                    }
                    existing.refuse_if_failing(&target.addr, self.conflict)?;
                    Ok::<_, dr_core::Error>(existing)
                })
                .await?
        };

        let counts = timeline
            .step("restore the keys", async {
                let mut counts = RestoreCounts::default();
                let mut loaded = HashSet::new();
                for (rdb, plan) in rdbs.iter().zip(&plans) {
                    let stream = request
                        .snapshots
                        .open_stream_with(&manifest.id, &rdb.stream, StreamCheck::Pieces)
                        .await?;
                    write(
                        &mut writers,
                        stream,
                        plan,
                        rdb,
                        &existing,
                        &request,
                        &mut counts,
                        &mut loaded,
                    )
                    .await?;
                }
                Ok::<_, dr_core::Error>(counts)
            })
            .await?;

        let report = report_of(&self.component, &request, timeline, &manifest);
        Ok((report, counts))
    }
}

#[async_trait]
impl Restore for RdbRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        Ok(self.restore_counted(request).await?.0)
    }
}

/// Whether the Cluster `seed` belongs to holds any key, on any master.
///
/// # Errors
/// Its layout or a master unreachable.
pub(crate) async fn cluster_has_keys(seed: &RedisServer) -> Result<bool> {
    let (mut writers, _) = Writers::open(&Into::Cluster(seed.clone()), 1).await?;
    writers.has_keys().await
}

/// Writes the RDB file `path` (its details `details`, as found when it was
/// written) into the Cluster `seed` belongs to, each key to its slot's
/// master; the file is checked again as it is read (framing, CRC-64, key
/// counts). A key that exists there already stops it: asked about first
/// where the Cluster holds keys, unless `none_of_these` (the caller knows
/// none of the file's keys can be there: a Cluster found empty, filled
/// since only with other shards' slots), else refused as it is written.
pub(crate) async fn write_file_into_cluster(
    seed: &RedisServer,
    path: &std::path::Path,
    details: &RdbSnapshotDetails,
    request: &RestoreRequest<'_>,
    none_of_these: bool,
) -> dr_core::Result<RestoreCounts> {
    let open = || async {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| dr_core::Error::io(format!("opening {}", path.display()), e))?;
        Ok::<dr_core::ByteStream, dr_core::Error>(Box::new(tokio::io::BufReader::with_capacity(
            1 << 20,
            file,
        )))
    };
    let (mut writers, target) = Writers::open(&Into::Cluster(seed.clone()), 4).await?;
    let libraries = if details.functions > 0 {
        writers.library_names().await?
    } else {
        HashSet::new()
    };
    let mut plan = Plan::new(&target, details, Conflict::Fail, libraries)?;
    let rdb = StoredRdb {
        stream: RDB_STREAM.parse()?,
        details: details.clone(),
    };
    plan.target_has_keys = !none_of_these && writers.has_keys().await?;
    let mut existing = Existing::default();
    // Values rebuilt from commands are checked whole first; else the
    // writing pass checks as it reads.
    plan.checked = plan.rebuild.is_some() || plan.target_has_keys;
    if plan.checked {
        check(
            &mut writers,
            open().await?,
            &plan,
            &rdb,
            request,
            &mut existing,
        )
        .await?;
        existing.refuse_if_failing(&target.addr, Conflict::Fail)?;
    }
    let mut counts = RestoreCounts::default();
    write(
        &mut writers,
        open().await?,
        &plan,
        &rdb,
        &existing,
        request,
        &mut counts,
        &mut HashSet::new(),
    )
    .await?;
    Ok(counts)
}

/// The report of a restore of snapshot `manifest` of `component`: its
/// timeline, the RTO from the incident (or the restore's start), and the
/// data lost between the snapshot's point and then.
pub(crate) fn report_of(
    component: &ComponentId,
    request: &RestoreRequest<'_>,
    timeline: Timeline,
    manifest: &Manifest,
) -> RecoveryReport {
    let mut report = RecoveryReport::new(
        component.clone(),
        Operation::Restore,
        request.objectives,
        timeline,
    );
    let wanted = request.incident_at.unwrap_or(report.timeline.started_at());
    if let Some(at) = request.incident_at {
        report = report.with_incident_at(at);
    }
    report.with_data_loss_between(manifest.recovery_point.at, wanted)
}

/// The snapshot `target` names among `component`'s.
pub(crate) async fn choose(
    source: &dyn dr_core::SnapshotSource,
    component: &ComponentId,
    target: &RecoveryTarget,
) -> dr_core::Result<Manifest> {
    if matches!(
        target,
        RecoveryTarget::Position(_) | RecoveryTarget::RestorePoint(_)
    ) {
        return Err(dr_core::Error::invalid(
            format!("restore of {component}"),
            format!("an RDB snapshot restores as it was taken; {target:?} needs an archive"),
        ));
    }
    let snapshots = source.snapshots(component).await?;
    target.snapshot_among(&snapshots).cloned().ok_or_else(|| {
        dr_core::Error::not_found(format!("a snapshot of {component} for {target:?}"))
    })
}

/// The framing name file mode records for an append-only directory.
pub(crate) const APPENDONLYDIR: &str = "appendonlydir";

/// One RDB of a snapshot: its stream and what was recorded of it.
#[derive(Debug, Clone)]
pub(crate) struct StoredRdb {
    pub(crate) stream: StreamName,
    pub(crate) details: RdbSnapshotDetails,
}

/// The RDBs snapshot `manifest` holds: one for a server's snapshot, one
/// per shard for a cluster's.
///
/// # Errors
/// [`dr_core::Error::Corrupt`] if it records neither kind of details.
pub(crate) fn rdb_streams(manifest: &Manifest) -> dr_core::Result<Vec<StoredRdb>> {
    if let Some(details) = manifest.details::<RdbSnapshotDetails>()? {
        if details.framing == APPENDONLYDIR {
            return Err(dr_core::Error::invalid(
                format!("snapshot {}", manifest.id),
                "it is a Redis append-only directory (file mode): restore it as files for a \
                 stopped server (RdbFileRestore, drkit restore --file <dir>); replaying its \
                 incremental AOF into a running server is not built",
            ));
        }
        return Ok(vec![StoredRdb {
            stream: RDB_STREAM.parse()?,
            details,
        }]);
    }
    if let Some(cluster) = manifest.details::<ClusterSnapshotDetails>()? {
        return cluster
            .shards
            .into_iter()
            .map(|shard| {
                Ok(StoredRdb {
                    stream: shard.stream.parse()?,
                    details: shard.rdb,
                })
            })
            .collect();
    }
    Err(dr_core::Error::corrupt(
        format!("snapshot {}", manifest.id),
        "it records neither an RDB's nor a cluster's details: not a Redis snapshot",
    ))
}

/// What the target is: its address (for messages), the oldest version
/// among its servers, and whether it is a cluster.
#[derive(Debug)]
struct TargetInfo {
    addr: String,
    major: u32,
    minor: u32,
    cluster: bool,
}

/// The connections a restore writes on.
enum Writers {
    One(Pipeline),
    Cluster(Box<ClusterPipelines>),
}

impl Writers {
    async fn open(into: &Into, window: usize) -> Result<(Self, TargetInfo)> {
        let (writers, addr, versions) = match into {
            Into::Server(server) => {
                let (mut conn, version) = server.connect().await?;
                let cluster = crate::fetch::info(&mut conn, "cluster").await?;
                if crate::fetch::info_field(&cluster, "cluster_enabled") == Some("1") {
                    return Err(Error::WrongTarget {
                        addr: conn.addr().to_owned(),
                        reason: "it is a Cluster node: restore into the Cluster, whose keys are \
                                 routed by slot"
                            .into(),
                    });
                }
                let addr = conn.addr().to_owned();
                (
                    Writers::One(Pipeline::new(conn, window)),
                    addr,
                    vec![version],
                )
            }
            Into::Cluster(seed) => {
                let layout = cluster_layout(seed).await?;
                let (pipelines, versions) =
                    ClusterPipelines::connect(seed, &layout, window).await?;
                let addr = format!("the Cluster of {}", seed.addr());
                (Writers::Cluster(Box::new(pipelines)), addr, versions)
            }
        };
        let mut oldest = (u32::MAX, u32::MAX);
        for version in &versions {
            let parsed = parse_version(version).ok_or_else(|| Error::WrongTarget {
                addr: addr.clone(),
                reason: format!("its redis_version {version:?} does not read"),
            })?;
            oldest = oldest.min(parsed);
        }
        let cluster = matches!(writers, Writers::Cluster(_));
        Ok((
            writers,
            TargetInfo {
                addr,
                major: oldest.0,
                minor: oldest.1,
                cluster,
            },
        ))
    }

    async fn push(
        &mut self,
        sent: Sent,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        match self {
            Writers::One(pipeline) => pipeline.push(sent, answered).await,
            Writers::Cluster(cluster) => cluster.push(sent, answered).await,
        }
    }

    /// Queues `key`'s `RESTORE`: on one server, written straight into the
    /// outgoing batch; into a Cluster, kept whole to be sent again where a
    /// redirection says.
    async fn push_restore(
        &mut self,
        key: &KeyEntry,
        rdb_version: u16,
        replace: bool,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        let mut sent = Sent {
            db: key.db,
            key: key.key.clone(),
            command: Bytes::new(),
            expect: Expect::Restore,
            tries: 0,
        };
        match self {
            Writers::One(pipeline) => {
                let encode = |out: &mut Vec<u8>| {
                    commands::restore_into(out, key, rdb_version, replace);
                };
                pipeline.push_encoded(sent, encode, answered).await
            }
            Writers::Cluster(cluster) => {
                sent.command = commands::restore(key, rdb_version, replace);
                cluster.push(sent, answered).await
            }
        }
    }

    /// Sends `sent` to every master: a function library.
    async fn push_everywhere(
        &mut self,
        sent: Sent,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        match self {
            Writers::One(pipeline) => pipeline.push(sent, answered).await,
            Writers::Cluster(cluster) => cluster.push_everywhere(&sent, answered).await,
        }
    }

    async fn finish(
        &mut self,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        match self {
            Writers::One(pipeline) => pipeline.finish(answered).await,
            Writers::Cluster(cluster) => cluster.finish(answered).await,
        }
    }

    /// How many servers a library is loaded on.
    fn masters(&self) -> usize {
        match self {
            Writers::One(_) => 1,
            Writers::Cluster(cluster) => cluster.pipelines_count().max(1),
        }
    }

    /// Whether the target holds any key (in any database, on any master).
    async fn has_keys(&mut self) -> Result<bool> {
        let mut pipelines: Vec<&mut Pipeline> = match self {
            Writers::One(pipeline) => vec![pipeline],
            Writers::Cluster(cluster) => cluster.pipelines_mut().iter_mut().collect(),
        };
        for pipeline in &mut pipelines {
            let keyspace = crate::fetch::info(pipeline.conn_mut(), "keyspace").await?;
            if keyspace.lines().any(|l| l.starts_with("db")) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The function libraries the target has (on any master), by name.
    async fn library_names(&mut self) -> Result<HashSet<String>> {
        let mut names = HashSet::new();
        match self {
            Writers::One(pipeline) => names.extend(library_names(pipeline.conn_mut()).await?),
            Writers::Cluster(cluster) => {
                for pipeline in cluster.pipelines_mut() {
                    names.extend(library_names(pipeline.conn_mut()).await?);
                }
            }
        }
        Ok(names)
    }
}

/// How the keys of one RDB go in: as `RESTORE`s of their payloads, or
/// rebuilt.
#[derive(Debug)]
struct Plan {
    addr: String,
    conflict: Conflict,
    /// Whether the target is a cluster (database 0 only).
    cluster: bool,
    /// The RDB's version, which its payloads carry.
    rdb_version: u16,
    /// Plain commands, for a target older than the RDB.
    rebuild: Option<Rebuilder>,
    /// The libraries the target has, by name.
    libraries: HashSet<String>,
    /// Whether the first pass checked the RDB; if not, the writing pass
    /// checks it as it goes.
    checked: bool,
    /// Whether the target held keys when the restore began: if not, no key
    /// of the snapshot can exist there, and none is asked about.
    target_has_keys: bool,
    /// Only the keys these match are written.
    keys: Option<KeyPatterns>,
}

impl Plan {
    /// Whether `key` is left out by the key patterns.
    fn leaves_out(&self, key: &[u8]) -> bool {
        self.keys.as_ref().is_some_and(|k| !k.matches(key))
    }
}

impl Plan {
    fn new(
        target: &TargetInfo,
        details: &RdbSnapshotDetails,
        conflict: Conflict,
        libraries: HashSet<String>,
    ) -> Result<Self> {
        let (major, minor) = (target.major, target.minor);
        let wrong = |reason: String| Error::WrongTarget {
            addr: target.addr.clone(),
            reason,
        };
        if (major, minor) < (5, 0) {
            return Err(wrong(format!(
                "Redis {major}.{minor} has no RESTORE … ABSTTL (5.0 and later)"
            )));
        }
        if target.cluster
            && let Some(db) = details.counts.databases.keys().find(|db| **db != 0)
        {
            return Err(not_a_cluster_db(&target.addr, *db));
        }
        let target_rdb = rdb_version_of(major, minor);
        let rebuild = if target_rdb >= details.rdb_version {
            None
        } else if (major, minor) >= (7, 0) {
            Some(Rebuilder::for_version(major, minor))
        } else {
            return Err(wrong(format!(
                "Redis {major}.{minor} reads RDB version {target_rdb}, older than the snapshot's {}, \
                 and rebuilding values from commands needs Redis 7.0 or later",
                details.rdb_version
            )));
        };
        Ok(Self {
            addr: target.addr.clone(),
            conflict,
            cluster: target.cluster,
            rdb_version: details.rdb_version,
            rebuild,
            libraries,
            checked: true,
            target_has_keys: true,
            keys: None,
        })
    }
}

/// `major.minor` of a `redis_version`.
pub(crate) fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The RDB version a Redis `major.minor` writes, and the newest whose
/// payloads it restores.
pub(crate) fn rdb_version_of(major: u32, minor: u32) -> u16 {
    match (major, minor) {
        (0..=4, _) => 8,
        (5 | 6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        (7, _) | (8, 0..=5) => 12,
        _ => 13,
    }
}

/// The function libraries the server has.
async fn library_names(conn: &mut Conn) -> Result<HashSet<String>> {
    let reply = conn.call("FUNCTION LIST", &[b"FUNCTION", b"LIST"]).await?;
    let mut names = HashSet::new();
    if let Reply::Array(Some(libraries)) = reply {
        for library in libraries {
            // Each library is a map: library_name, <name>, engine, …
            if let Reply::Array(Some(fields)) = library {
                let mut fields = fields.into_iter();
                while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
                    if field == Reply::Bulk(Some(b"library_name".to_vec()))
                        && let Reply::Bulk(Some(name)) = value
                    {
                        names.insert(String::from_utf8_lossy(&name).into_owned());
                    }
                }
            }
        }
    }
    Ok(names)
}

/// A library's name, from the shebang of its code: `#!lua name=mylib`.
fn library_name(code: &[u8]) -> Option<String> {
    let first = code.split(|&b| b == b'\n').next()?;
    let first = std::str::from_utf8(first).ok()?;
    first
        .strip_prefix("#!")?
        .split_whitespace()
        .find_map(|word| word.strip_prefix("name="))
        .map(str::to_owned)
}

/// The error of an RDB whose checksum is not the one recorded.
fn changed_checksum(rdb: &StoredRdb, found: Option<u64>) -> dr_core::Error {
    dr_core::Error::corrupt(
        format!("the stored RDB {}", rdb.stream),
        format!(
            "its checksum {found:?} is not the one recorded at backup time, {:?}",
            rdb.details.checksum
        ),
    )
}

/// Counts one key as the backup counted it.
fn tally(counts: &mut KeyCounts, key: &KeyEntry) {
    let db = counts.databases.entry(key.db).or_default();
    db.keys += 1;
    if key.expire_at_ms.is_some() {
        db.expires += 1;
    }
    if let Some(kind) = key.value_type.kind() {
        *db.by_kind.entry(kind).or_insert(0) += 1;
    }
}

/// Reports how far a pass has come, every 64 MiB.
struct Reporter<'a> {
    step: &'static str,
    total: u64,
    next: u64,
    sink: Option<&'a dyn dr_core::ProgressSink>,
}

impl<'a> Reporter<'a> {
    fn new(step: &'static str, details: &RdbSnapshotDetails, request: &RestoreRequest<'a>) -> Self {
        Self {
            step,
            total: details.bytes,
            next: 0,
            sink: request.progress,
        }
    }

    fn at(&mut self, bytes: u64) {
        if let Some(sink) = self.sink
            && bytes >= self.next
        {
            sink.report(&Progress::new(self.step, bytes, Some(self.total)));
            self.next = bytes + (64 << 20);
        }
    }
}

/// What the first pass found in the target.
#[derive(Debug, Default)]
struct Existing {
    /// Keys that exist: all of them where a rebuild skips them, else a few
    /// to name.
    keys: HashSet<(u64, Bytes)>,
    count: u64,
    libraries: Vec<String>,
}

impl Existing {
    fn refuse_if_failing(&self, addr: &str, conflict: Conflict) -> Result<()> {
        if conflict != Conflict::Fail {
            return Ok(());
        }
        if self.count > 0 {
            let mut examples: Vec<String> = self
                .keys
                .iter()
                .map(|(db, key)| format!("db {db} {}", printable(key)))
                .collect();
            examples.sort();
            examples.truncate(5);
            return Err(Error::Conflicts {
                addr: addr.to_owned(),
                what: "keys",
                count: self.count,
                examples: examples.join(", "),
            });
        }
        if !self.libraries.is_empty() {
            return Err(Error::Conflicts {
                addr: addr.to_owned(),
                what: "function libraries",
                count: self.libraries.len() as u64,
                examples: self.libraries.join(", "),
            });
        }
        Ok(())
    }
}

/// The first pass over one RDB: read whole and checked, the values a
/// rebuild needs checked, and the keys that exist in the target found
/// (where the conflict policy needs them).
async fn check(
    writers: &mut Writers,
    stream: dr_core::ByteStream,
    plan: &Plan,
    rdb: &StoredRdb,
    request: &RestoreRequest<'_>,
    existing: &mut Existing,
) -> dr_core::Result<()> {
    let mut reader = RdbReader::new(stream);
    let mut counts = KeyCounts::default();
    let mut reporter = Reporter::new("check the snapshot", &rdb.details, request);
    // Keys to ask about: only where the policy needs to know before writing.
    let ask = plan.target_has_keys
        && (plan.conflict == Conflict::Fail
            || (plan.conflict == Conflict::Skip && plan.rebuild.is_some()));
    let now = now_ms();
    let Existing {
        keys,
        count,
        libraries,
    } = existing;
    let mut answered = |sent: Sent, answer: Answer| -> Result<()> {
        match answer {
            Answer::Done { exists: true } => {
                *count += 1;
                if plan.conflict == Conflict::Skip || keys.len() < 5 {
                    keys.insert((sent.db, sent.key));
                }
                Ok(())
            }
            Answer::Done { exists: false } | Answer::Busy => Ok(()),
            Answer::Refused(message) => Err(Error::ServerRefused {
                addr: plan.addr.clone(),
                command: "EXISTS",
                message,
            }),
        }
    };
    while let Some(event) = reader.next_event().await? {
        match event {
            Event::Key(key) => {
                tally(&mut counts, &key);
                if key.expire_at_ms.is_some_and(|at| at <= now) || plan.leaves_out(&key.key) {
                    continue;
                }
                if let Some(rebuild) = &plan.rebuild {
                    let value = decode_value(key.value_type, &key.value, plan.rdb_version)?;
                    rebuild.check(&key, &value)?;
                }
                if ask {
                    let mut command = Vec::with_capacity(key.key.len() + 24);
                    commands::encode(&mut command, &[b"EXISTS", &key.key]);
                    let sent = Sent {
                        db: key.db,
                        key: key.key.clone(),
                        command: Bytes::from(command),
                        expect: Expect::Exists,
                        tries: 0,
                    };
                    writers.push(sent, &mut answered).await?;
                }
                reporter.at(key.value_offset);
            }
            Event::Function(code) => {
                if plan.keys.is_none()
                    && let Some(name) = library_name(&code)
                    && plan.libraries.contains(&name)
                    && !libraries.contains(&name)
                {
                    libraries.push(name);
                }
            }
            Event::Eof(eof) if eof.checksum != rdb.details.checksum => {
                return Err(changed_checksum(rdb, eof.checksum));
            }
            _ => {}
        }
    }
    writers.finish(&mut answered).await?;
    let differences = counts.differences(&rdb.details.counts);
    if !differences.is_empty() {
        return Err(dr_core::Error::corrupt(
            format!("the stored RDB {}", rdb.stream),
            format!(
                "its keys differ from those counted at backup time: {}",
                differences.join("; ")
            ),
        ));
    }
    Ok(())
}

/// The second pass over one RDB: every key written; function libraries
/// once each (`loaded` holds those already sent, by code).
#[allow(clippy::too_many_arguments)]
async fn write(
    writers: &mut Writers,
    stream: dr_core::ByteStream,
    plan: &Plan,
    rdb: &StoredRdb,
    existing: &Existing,
    request: &RestoreRequest<'_>,
    counts: &mut RestoreCounts,
    loaded: &mut HashSet<Bytes>,
) -> dr_core::Result<()> {
    let mut reader = RdbReader::new(stream);
    let mut reporter = Reporter::new("restore the keys", &rdb.details, request);
    let mut tallied = KeyCounts::default();
    counts.rebuilt |= plan.rebuild.is_some();
    let now = now_ms();
    let replace = plan.conflict == Conflict::Replace;
    let mut restored = 0u64;
    let mut kept = 0u64;
    let mut functions = 0u64;
    let mut answered = |sent: Sent, answer: Answer| -> Result<()> {
        match (sent.expect, answer) {
            (Expect::Restore | Expect::Step { last: true }, Answer::Done { .. }) => {
                if sent.key.is_empty() {
                    functions += 1;
                } else {
                    restored += 1;
                }
                Ok(())
            }
            (_, Answer::Done { .. }) => Ok(()),
            (Expect::Restore, Answer::Busy) if plan.conflict == Conflict::Skip => {
                kept += 1;
                Ok(())
            }
            (_, Answer::Busy) => Err(Error::Conflicts {
                addr: plan.addr.clone(),
                what: "keys",
                count: 1,
                examples: format!(
                    "db {} {}, written while the restore ran",
                    sent.db,
                    printable(&sent.key)
                ),
            }),
            (Expect::Restore, Answer::Refused(message)) => Err(Error::ServerRefused {
                addr: plan.addr.clone(),
                command: "RESTORE",
                message: format!("{message} (db {}, key {})", sent.db, printable(&sent.key)),
            }),
            (_, Answer::Refused(message))
                if sent.key.is_empty() && message.contains("already exists") =>
            {
                Err(Error::Conflicts {
                    addr: plan.addr.clone(),
                    what: "function libraries",
                    count: 1,
                    examples: message,
                })
            }
            (_, Answer::Refused(message)) if sent.key.is_empty() => Err(Error::ServerRefused {
                addr: plan.addr.clone(),
                command: "FUNCTION LOAD",
                message,
            }),
            (_, Answer::Refused(message)) => Err(Error::ServerRefused {
                addr: plan.addr.clone(),
                command: "a command rebuilding a value",
                message: format!(
                    "{message} ({} in db {}, key {})",
                    commands::name_of(&sent.command),
                    sent.db,
                    printable(&sent.key)
                ),
            }),
        }
    };
    while let Some(event) = reader.next_event().await? {
        match event {
            Event::Function(code) => {
                if plan.keys.is_some() || !loaded.insert(code.clone()) {
                    continue;
                }
                let name = library_name(&code);
                if plan.conflict == Conflict::Skip
                    && name.as_ref().is_some_and(|n| plan.libraries.contains(n))
                {
                    counts.kept_functions += 1;
                    continue;
                }
                let mut command = Vec::with_capacity(code.len() + 48);
                let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
                if replace {
                    args.push(b"REPLACE");
                }
                args.push(&code);
                commands::encode(&mut command, &args);
                let sent = Sent {
                    db: 0,
                    key: Bytes::new(),
                    command: Bytes::from(command),
                    expect: Expect::Step { last: true },
                    tries: 0,
                };
                writers.push_everywhere(sent, &mut answered).await?;
            }
            Event::Key(key) => {
                reporter.at(key.value_offset);
                if !plan.checked {
                    tally(&mut tallied, &key);
                }
                if plan.leaves_out(&key.key) {
                    counts.left_out += 1;
                    continue;
                }
                if key.expire_at_ms.is_some_and(|at| at <= now) {
                    counts.expired += 1;
                    continue;
                }
                if plan.cluster && key.db != 0 {
                    return Err(not_a_cluster_db(&plan.addr, key.db).into());
                }
                match &plan.rebuild {
                    None => {
                        writers
                            .push_restore(&key, plan.rdb_version, replace, &mut answered)
                            .await?;
                    }
                    Some(rebuild) => {
                        if existing.keys.contains(&(key.db, key.key.clone())) {
                            counts.kept_existing += 1;
                            continue;
                        }
                        let value = decode_value(key.value_type, &key.value, plan.rdb_version)?;
                        let steps = rebuild.commands(&key, &value, replace)?;
                        let last = steps.len().saturating_sub(1);
                        for (i, command) in steps.into_iter().enumerate() {
                            let sent = Sent {
                                db: key.db,
                                key: key.key.clone(),
                                command,
                                expect: Expect::Step { last: i == last },
                                tries: 0,
                            };
                            writers.push(sent, &mut answered).await?;
                        }
                    }
                }
            }
            Event::Eof(eof) if !plan.checked && eof.checksum != rdb.details.checksum => {
                return Err(changed_checksum(rdb, eof.checksum));
            }
            _ => {}
        }
    }
    writers.finish(&mut answered).await?;
    if !plan.checked {
        let differences = tallied.differences(&rdb.details.counts);
        if !differences.is_empty() {
            return Err(dr_core::Error::corrupt(
                format!("the stored RDB {}", rdb.stream),
                format!(
                    "its keys differ from those counted at backup time, found after {restored} \
                     keys were written: {}",
                    differences.join("; ")
                ),
            ));
        }
    }
    counts.restored += restored;
    counts.kept_existing += kept;
    // A library loaded on every master counts once.
    counts.functions += functions / writers.masters() as u64;
    Ok(())
}

/// Now, in milliseconds since the epoch.
fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_rdb_versions() {
        assert_eq!(parse_version("7.0.15"), Some((7, 0)));
        assert_eq!(parse_version("8.2.3"), Some((8, 2)));
        assert_eq!(parse_version("seven"), None);
        assert_eq!(rdb_version_of(7, 0), 10);
        assert_eq!(rdb_version_of(7, 2), 11);
        assert_eq!(rdb_version_of(7, 4), 12);
        assert_eq!(rdb_version_of(8, 2), 12);
        assert_eq!(rdb_version_of(6, 2), 9);
    }

    #[test]
    fn library_names_come_from_the_shebang() {
        assert_eq!(
            library_name(
                b"#!lua name=mylib\nredis.register_function('f', function() return 1 end)"
            ),
            Some("mylib".to_owned())
        );
        assert_eq!(library_name(b"#!lua\nreturn 1"), None);
        assert_eq!(library_name(b"return 1"), None);
    }
}
