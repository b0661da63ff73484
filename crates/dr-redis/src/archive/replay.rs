//! [`ArchiveRestore`] (dr-core `Restore`): a point-in-time restore. The
//! newest snapshot before the target, then the archived commands up to it,
//! fed to the target server **as its master**: it replicates from us (the
//! RDB, then the stream) and applies exactly what the master did, expiring
//! nothing by today's clock while it follows; then it is told `REPLICAOF NO
//! ONE`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use dr_core::{
    ArchiveSource, Capabilities, Capability, ComponentId, Manifest, Position, RecoveryReport,
    RecoveryTarget, Restore, RestoreRequest, SegmentName, SnapshotSourceExt, StreamName, Timeline,
    async_trait,
};
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::segment::{Record, parse_any_name, parse_fork_marker, parse_name, read_segment};
use crate::cluster::snapshot::ClusterSnapshotDetails;
use crate::error::Error;
use crate::fetch::{RedisServer, info, info_field};
use crate::inspect::redis_snapshots;
use crate::replication::commands::CommandSplitter;
use crate::replication::link::HistoryPoint;
use crate::restore::{StoredRdb, copy_checked, fetch_to_file, report_of};
use crate::snapshot::{RDB_STREAM, RdbSnapshotDetails};

/// Restores a component to a point in time from its snapshots and its
/// command archive ([`crate::CommandArchiver`]), into an empty standalone
/// server.
///
/// The target connects to this process as to a master (`REPLICAOF`): it
/// must reach the address [`ArchiveRestore::serve_on`] listens on (127.0.0.1
/// on a free port by default; [`ArchiveRestore::advertise`] names the host
/// it should use).
#[derive(Debug, Clone)]
pub struct ArchiveRestore {
    component: ComponentId,
    into: RedisServer,
    listen: SocketAddr,
    advertise: Option<String>,
    wait: Duration,
    file: Option<PathBuf>,
    cluster: Option<(ComponentId, u16)>,
}

/// An RDB a replay can start from: a snapshot of the component (an
/// archiver's full synchronization, or a scheduled one), or a shard's RDB
/// in a snapshot of its cluster.
struct Base {
    manifest: Manifest,
    stream: StreamName,
    details: RdbSnapshotDetails,
    replication_id: String,
    offset: u64,
    at: Timestamp,
    /// A snapshot of the component itself, whose point its archive
    /// continues from by construction.
    own: bool,
}

/// What will be replayed: the snapshot, and the commands after it.
#[derive(Debug)]
struct ReplayPlan {
    manifest: Manifest,
    /// The RDB's stream in it (a shard's, in a cluster snapshot).
    rdb_stream: StreamName,
    /// When the RDB was cut.
    base_at: Timestamp,
    details: RdbSnapshotDetails,
    replication_id: String,
    /// The snapshot's offset: where the commands start.
    start: u64,
    /// The stream after it, cut at the target: whole commands.
    stream: Vec<Bytes>,
    /// The offset after the last command replayed.
    end: u64,
    /// When the last record replayed arrived.
    last_arrival: Option<Timestamp>,
    /// Bytes of the archive left out: a forked history's lost tail.
    orphaned: u64,
}

impl ArchiveRestore {
    /// Restores `component` into `into`, which must hold no key; waits up
    /// to ten minutes for it to apply everything.
    pub fn new(component: ComponentId, into: RedisServer) -> Self {
        Self {
            component,
            into,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            wait: Duration::from_secs(600),
            file: None,
            cluster: None,
        }
    }

    /// For the archive of one shard of a Cluster ([`crate::ClusterArchiver`]):
    /// the snapshots of the cluster `cluster` ([`crate::ClusterSnapshot`])
    /// are bases too, each one's RDB of the master that served
    /// `first_slot`, where the archive continues its history from its
    /// point.
    #[must_use]
    pub fn cluster_snapshots(mut self, cluster: ComponentId, first_slot: u16) -> Self {
        self.cluster = Some((cluster, first_slot));
        self
    }

    /// Every RDB a replay could start from ([`Base`]), unordered.
    async fn bases(&self, source: &dyn dr_core::SnapshotSource) -> dr_core::Result<Vec<Base>> {
        let mut bases = Vec::new();
        for manifest in redis_snapshots(source, &self.component).await? {
            let Some(Position::Redis {
                replication_id,
                offset,
            }) = &manifest.recovery_point.position
            else {
                continue;
            };
            bases.push(Base {
                stream: RDB_STREAM.parse()?,
                details: RdbSnapshotDetails::of(&manifest)?,
                replication_id: replication_id.to_string(),
                offset: *offset,
                at: manifest.recovery_point.at,
                own: true,
                manifest,
            });
        }
        let Some((cluster, first_slot)) = &self.cluster else {
            return Ok(bases);
        };
        for manifest in redis_snapshots(source, cluster).await? {
            let Some(details) = manifest.details::<ClusterSnapshotDetails>()? else {
                continue;
            };
            let master = details.layout.master_of(*first_slot).map(|m| m.id.clone());
            let Some(shard) = details
                .shards
                .into_iter()
                .find(|shard| Some(&shard.master_id) == master.as_ref())
            else {
                continue;
            };
            bases.push(Base {
                stream: shard.stream.parse()?,
                details: shard.rdb,
                replication_id: shard.replication_id,
                offset: shard.offset,
                at: shard.forked_at,
                own: false,
                manifest,
            });
        }
        Ok(bases)
    }

    /// Makes the result an RDB file at `path` rather than a running
    /// server: the server given to [`ArchiveRestore::new`] is then a
    /// staging server (standalone, empty, able to read the snapshot's RDB
    /// version). The replay runs there as always; its data set is then
    /// fetched as an RDB, checked, and written to `path` (under a temporary
    /// name, renamed into place only whole), and the staging server is
    /// emptied again (`FLUSHALL`), whether the file was written or not.
    #[must_use]
    pub fn into_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Listens for the target's replication connection on `addr`.
    #[must_use]
    pub fn serve_on(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Tells the target to connect to `host` (default: the listening
    /// address's IP).
    #[must_use]
    pub fn advertise(mut self, host: impl Into<String>) -> Self {
        self.advertise = Some(host.into());
        self
    }

    /// How long the target may take to load and apply everything.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The snapshot and the archived commands that reach `target`: checked
    /// whole (every segment read and checked, no gap, the RDB read and its
    /// checksum and counts checked) before anything is touched.
    async fn plan(&self, request: &RestoreRequest<'_>) -> dr_core::Result<ReplayPlan> {
        let what = format!("point-in-time restore of {}", self.component);
        let archive = request.archive.ok_or_else(|| {
            dr_core::Error::invalid(
                &what,
                "it needs the command archive (RestoreRequest::archive)",
            )
        })?;
        let (records, forks) = archived_records(archive, &self.component).await?;
        let mut bases = self.bases(request.snapshots).await?;
        bases.sort_by_key(|base| base.at);
        // The newest base with a replication point the target is after
        // (and, for a cluster snapshot's shard, one the archive continues).
        let chosen = bases.into_iter().rev().find(|base| {
            let fits = match request.target {
                RecoveryTarget::Latest => true,
                RecoveryTarget::Time(at) => base.at <= *at,
                RecoveryTarget::Position(Position::Redis { offset: to, .. }) => base.offset <= *to,
                _ => false,
            };
            fits && (base.own
                || records.iter().any(|(history, record)| {
                    *history == base.replication_id
                        && (record.start..=record.offsets().end).contains(&base.offset)
                }))
        });
        let Base {
            manifest,
            stream: rdb_stream,
            details,
            replication_id,
            offset: start,
            at: base_at,
            ..
        } = chosen.ok_or_else(|| {
            dr_core::Error::not_found(format!(
                "a snapshot of {} with a replication point before {:?}",
                self.component, request.target
            ))
        })?;

        // The records from the snapshot's offset on, without a gap.
        let mut stream = Vec::new();
        let mut next = start;
        let mut last_arrival = None;
        let mut reached = None;
        // What a fork left behind up to the target: archived from an old
        // master past where its successor took the history over; never
        // replayed. Counted over the whole archive, whichever line of
        // history the replay below meets first.
        let orphaned = records
            .iter()
            .filter(|(_, record)| arrived_by(record, request.target))
            .map(|(history, record)| past_fork(&forks, history, record.offsets()))
            .sum();
        // Whether bytes up to `end` of `history` reach past its fork.
        let beyond_fork = |history: &str, end: u64| past_fork(&forks, history, 0..end) > 0;
        // The history being replayed, and whether it forked where the
        // replay stands.
        let mut line = replication_id.as_str();
        let ended_at_fork = |line: &str, next: u64| {
            forks
                .iter()
                .any(|(forked, at)| forked == line && *at == next)
        };
        for (history, record) in records.iter().filter(|(_, r)| r.offsets().end > start) {
            if beyond_fork(history, record.start + 1) {
                continue;
            }
            // Replayed up to a fork: what comes after is another line of
            // history (its master's own snapshot starts it), not a gap.
            if record.start > next && ended_at_fork(line, next) {
                reached = Some(next);
                break;
            }
            if record.start > next {
                return Err(dr_core::Error::corrupt(
                    format!("the command archive of {}", self.component),
                    format!("it has no record from offset {next} to {}", record.start),
                ));
            }
            let arrived = Timestamp::from_millisecond(record.arrived_ms).ok();
            if let RecoveryTarget::Time(at) = request.target
                && arrived.is_some_and(|t| t > *at)
            {
                reached = Some(next);
                break;
            }
            let mut split = CommandSplitter::new(record.start);
            split.feed(&record.data);
            while let Some(command) = split.next_command()? {
                if command.offsets.start < next {
                    continue;
                }
                if beyond_fork(history, command.offsets.end) {
                    continue;
                }
                if let RecoveryTarget::Position(Position::Redis { offset: to, .. }) = request.target
                    && command.offsets.end > *to
                {
                    reached = Some(next);
                    break;
                }
                next = command.offsets.end;
                line = history;
                stream.push(command.raw);
            }
            if reached.is_some() {
                break;
            }
            last_arrival = arrived;
        }
        match request.target {
            RecoveryTarget::Position(Position::Redis { offset: to, .. }) if next != *to => {
                return Err(dr_core::Error::invalid(
                    &what,
                    format!(
                        "offset {to} is not between two archived commands; the nearest before it is {next}"
                    ),
                ));
            }
            RecoveryTarget::Time(at) if reached.is_none() => {
                // Past the newest record, the archive still reaches a time
                // its archiver saw it hold everything the master had sent
                // (its coverage): nothing was written between.
                let covered = archive.coverage(&self.component).await?.filter(|c| {
                    c.seen_at >= *at
                        && matches!(&c.position, Position::Redis { offset, .. } if *offset == next)
                });
                // A line of history that ends at a fork holds nothing later:
                // every time after its last kept record finds it there.
                let ended = ended_at_fork(line, next);
                if covered.is_none() && !ended {
                    let newest = last_arrival.map_or("none".to_owned(), |t| t.to_string());
                    return Err(dr_core::Error::invalid(
                        &what,
                        format!(
                            "the archive does not reach {at}: its newest record arrived at \
                             {newest} (offset {next}), and its archiver did not see it whole \
                             later; restore to that time or earlier"
                        ),
                    ));
                }
            }
            _ => {}
        }
        // The RDB itself, read whole and checked before the target is touched.
        let rdb = StoredRdb {
            stream: rdb_stream.clone(),
            details: details.clone(),
        };
        copy_checked(request.snapshots, &manifest, &rdb, &mut tokio::io::sink()).await?;
        Ok(ReplayPlan {
            manifest,
            rdb_stream,
            base_at,
            details,
            replication_id,
            start,
            stream,
            end: next,
            last_arrival,
            orphaned,
        })
    }
}

/// Where `component`'s command archive ends: the history and offset after
/// its newest record, and when that record arrived; `None` for an archive
/// with no segment. Only the newest segment is read. An archiver resumes
/// from here.
///
/// # Errors
/// The store's; a newest segment that does not read back.
pub async fn archive_end(
    archive: &dyn ArchiveSource,
    component: &ComponentId,
) -> dr_core::Result<Option<(HistoryPoint, Timestamp)>> {
    // The segment that reaches furthest: a roll-up by its end, any other by
    // its start (where they tie, the other holds what came later).
    let newest = archive
        .segments(component, "")
        .await?
        .into_iter()
        .filter_map(|name| {
            let (header, end) = parse_any_name(&name)?;
            Some(((end.unwrap_or(header.start), end.is_none()), name))
        })
        .max_by_key(|(reach, _)| *reach);
    let Some((_, name)) = newest else {
        return Ok(None);
    };
    let (header, records) = read_named(archive, component, &name).await?;
    Ok(records.last().map(|record| {
        let arrived =
            Timestamp::from_millisecond(record.arrived_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        (
            HistoryPoint {
                replication_id: header.replication_id,
                offset: record.offsets().end,
            },
            arrived,
        )
    }))
}

/// One segment of `component`'s archive, read back and checked.
async fn read_named(
    archive: &dyn ArchiveSource,
    component: &ComponentId,
    name: &dr_core::SegmentName,
) -> dr_core::Result<(super::segment::SegmentHeader, Vec<Record>)> {
    let mut bytes = Vec::new();
    archive
        .open_segment(component, name)
        .await?
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| {
            dr_core::Error::corrupt(
                format!("segment {name} of {component}"),
                format!("it does not read back: {e}"),
            )
        })?;
    read_segment(Bytes::from(bytes)).map_err(|e| {
        dr_core::Error::corrupt(format!("segment {name} of {component}"), e.to_string())
    })
}

/// Whether `record` arrived by `target` (every record does by the latest
/// point; by an offset, each that starts before it).
fn arrived_by(record: &Record, target: &RecoveryTarget) -> bool {
    match target {
        RecoveryTarget::Time(at) => record.arrived_ms <= at.as_millisecond(),
        RecoveryTarget::Position(Position::Redis { offset, .. }) => record.start < *offset,
        _ => true,
    }
}

/// The bytes of `offsets`, archived on history `history`, that lie past
/// where that history forked.
fn past_fork(forks: &[(String, u64)], history: &str, offsets: std::ops::Range<u64>) -> u64 {
    forks
        .iter()
        .filter(|(forked, _)| forked == history)
        .map(|(_, at)| offsets.end.saturating_sub(offsets.start.max(*at)))
        .max()
        .unwrap_or(0)
}

/// Every record of `component`'s command archive, by offset, each with
/// its history's id; and where histories forked ([`parse_fork_marker`]).
async fn archived_records(
    archive: &dyn ArchiveSource,
    component: &ComponentId,
) -> dr_core::Result<(Vec<(String, Record)>, Vec<(String, u64)>)> {
    let mut records = Vec::new();
    let mut forks = Vec::new();
    for name in archive.segments(component, "").await? {
        if let Some(fork) = parse_fork_marker(&name) {
            forks.push(fork);
            continue;
        }
        if parse_any_name(&name).is_none() {
            continue;
        }
        let (header, segment) = read_named(archive, component, &name).await?;
        records.extend(
            segment
                .into_iter()
                .map(|record| (header.replication_id.clone(), record)),
        );
    }
    // A roll-up holds the very records of the segments it rolled up, until
    // they are forgotten: each is kept once.
    records.sort_by(|(a, x), (b, y)| x.start.cmp(&y.start).then_with(|| a.cmp(b)));
    records.dedup_by(|(a, x), (b, y)| a == b && x.start == y.start);
    Ok((records, forks))
}

/// The segments of `component`'s archive that a roll-up holds whole (each
/// record they hold is in a roll-up of the same history): what can be
/// forgotten (`Repository::forget_segments`) without losing a record.
/// Without journals, a [`crate::CommandArchiver`] stores each interval's
/// record as a segment of its own, then a roll-up of them as it seals.
///
/// # Errors
/// The store's.
pub async fn rolled_up_segments(
    archive: &dyn ArchiveSource,
    component: &ComponentId,
) -> dr_core::Result<Vec<SegmentName>> {
    let names = archive.segments(component, "").await?;
    let rollups: Vec<(String, std::ops::Range<u64>)> = names
        .iter()
        .filter_map(parse_any_name)
        .filter_map(|(header, end)| Some((header.replication_id, header.start..end?)))
        .collect();
    // A roll-up is made of whole segments only: one that starts within it
    // ends within it.
    Ok(names
        .into_iter()
        .filter(|name| {
            parse_name(name).is_some_and(|header| {
                rollups.iter().any(|(history, offsets)| {
                    *history == header.replication_id && offsets.contains(&header.start)
                })
            })
        })
        .collect())
}

#[async_trait]
impl Restore for ArchiveRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with(Capability::PointInTime)
            .with(Capability::PositionTarget)
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        Ok(self.replay(request).await?.0)
    }
}

impl ArchiveRestore {
    /// Checks that the snapshot and the archive reach `request`'s target,
    /// as [`Restore::restore`] does first, touching no server.
    pub(crate) async fn check(&self, request: &RestoreRequest<'_>) -> dr_core::Result<()> {
        self.plan(request).await.map(|_| ())
    }

    /// [`Restore::restore`], with the details of the RDB file written
    /// where the result is one ([`ArchiveRestore::into_file`]).
    pub(crate) async fn replay(
        &self,
        request: RestoreRequest<'_>,
    ) -> dr_core::Result<(RecoveryReport, Option<RdbSnapshotDetails>)> {
        let mut timeline = Timeline::start_now();
        let plan = timeline
            .step("check the snapshot and the archive", self.plan(&request))
            .await?;
        if plan.orphaned > 0 {
            timeline.mark(format!(
                "left out {} bytes the archive holds past a fork: the old master's writes its \
                 successor never had, lost in the failover",
                plan.orphaned
            ))?;
        }
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(|e| dr_core::Error::io(format!("listening on {}", self.listen), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| dr_core::Error::io("the listening address", e))?;
        let (mut conn, version) = self.into.connect().await?;
        let addr = conn.addr().to_owned();
        let keyspace = info(&mut conn, "keyspace").await?;
        if keyspace.lines().any(|l| l.starts_with("db")) {
            return Err(Error::WrongTarget {
                addr,
                reason: "it holds keys: a point-in-time restore replaces the whole data set, \
                         so it goes into an empty server"
                    .into(),
            }
            .into());
        }
        let (major, minor) = crate::restore::parse_version(&version).unwrap_or((0, 0));
        let readable = crate::restore::rdb_version_of(major, minor);
        if readable < plan.details.rdb_version {
            return Err(Error::WrongTarget {
                addr,
                reason: format!(
                    "Redis {version} reads RDB version {readable}, older than the snapshot's {}; \
                     a replica loads the RDB as it is",
                    plan.details.rdb_version
                ),
            }
            .into());
        }
        let host = self
            .advertise
            .clone()
            .unwrap_or_else(|| local.ip().to_string());
        let port = local.port().to_string();
        conn.call(
            "REPLICAOF",
            &[b"REPLICAOF", host.as_bytes(), port.as_bytes()],
        )
        .await?;
        let served = timeline
            .step("replay as the target's master", async {
                tokio::time::timeout(self.wait, serve(&listener, &plan, &request))
                    .await
                    .map_err(|_| dr_core::Error::Timeout {
                        operation: format!("{addr} applying the snapshot and the archive"),
                        after: self.wait,
                    })?
            })
            .await;
        // Whatever happened, the target follows us no longer.
        let detached = conn.call("REPLICAOF", &[b"REPLICAOF", b"NO", b"ONE"]).await;
        served?;
        detached?;
        let replication = info(&mut conn, "replication").await?;
        if info_field(&replication, "role") != Some("master") {
            return Err(Error::WrongTarget {
                addr,
                reason: format!("after REPLICAOF NO ONE, INFO replication says {replication:?}"),
            }
            .into());
        }
        let file = match &self.file {
            Some(path) => {
                // A full synchronization waits for more replicas first
                // (5 s by default): none are coming to a staging server.
                let delay = no_sync_delay(&mut conn).await;
                let fetched = timeline
                    .step(
                        format!("write the RDB file {}", path.display()),
                        fetch_to_file(&self.into, path),
                    )
                    .await;
                if let Some(delay) = delay {
                    let set = [&b"CONFIG"[..], b"SET", SYNC_DELAY, &delay];
                    conn.call("CONFIG", &set).await.ok();
                }
                // The staging server is emptied for the next use either way.
                let emptied = conn.call("FLUSHALL", &[b"FLUSHALL", b"SYNC"]).await;
                let details = fetched?;
                emptied?;
                Some(details)
            }
            None => None,
        };
        let report = report_of(&self.component, &request, timeline, &plan.manifest);
        // The data is as of the last command replayed, not the snapshot.
        let wanted = match request.target {
            RecoveryTarget::Time(at) => *at,
            _ => request.incident_at.unwrap_or(report.timeline.started_at()),
        };
        let recovered = plan.last_arrival.unwrap_or(plan.base_at);
        Ok((
            report.with_data_loss_between(recovered.min(wanted), wanted),
            file,
        ))
    }
}

/// The setting a server waits this long under for more replicas before a
/// diskless full synchronization.
const SYNC_DELAY: &[u8] = b"repl-diskless-sync-delay";

/// Sets the server's [`SYNC_DELAY`] to 0 where it allows; its value before.
async fn no_sync_delay(conn: &mut crate::fetch::conn::Conn) -> Option<Vec<u8>> {
    use crate::fetch::conn::Reply;
    let got = conn
        .call("CONFIG", &[b"CONFIG", b"GET", SYNC_DELAY])
        .await
        .ok()?;
    let Reply::Array(Some(pair)) = got else {
        return None;
    };
    let Some(Reply::Bulk(Some(value))) = pair.into_iter().nth(1) else {
        return None;
    };
    conn.call("CONFIG", &[b"CONFIG", b"SET", SYNC_DELAY, b"0"])
        .await
        .ok()?;
    Some(value)
}

/// Serves the target's replication connection: the handshake, the RDB,
/// the stream; returns once it acknowledges the stream's end.
async fn serve(
    listener: &TcpListener,
    plan: &ReplayPlan,
    request: &RestoreRequest<'_>,
) -> dr_core::Result<()> {
    let (mut socket, peer) = listener
        .accept()
        .await
        .map_err(|e| dr_core::Error::io("accepting the target's connection", e))?;
    socket.set_nodelay(true).ok();
    let peer = peer.to_string();
    let mut split = CommandSplitter::new(0);
    // The handshake, up to PSYNC or SYNC.
    loop {
        let command = next_command(&mut socket, &mut split, &peer).await?;
        if command.is("PING") {
            write(&mut socket, b"+PONG\r\n", &peer).await?;
        } else if command.is("REPLCONF") || command.is("AUTH") {
            write(&mut socket, b"+OK\r\n", &peer).await?;
        } else if command.is("PSYNC") || command.is("SYNC") {
            let line = format!("+FULLRESYNC {} {}\r\n", plan.replication_id, plan.start);
            write(&mut socket, line.as_bytes(), &peer).await?;
            break;
        } else {
            let line = format!(
                "-ERR drkit's restore serves replication only, not {}\r\n",
                String::from_utf8_lossy(command.name())
            );
            write(&mut socket, line.as_bytes(), &peer).await?;
        }
    }
    let header = format!("${}\r\n", plan.details.bytes);
    write(&mut socket, header.as_bytes(), &peer).await?;
    let mut rdb = request
        .snapshots
        .open_stream(&plan.manifest.id, &plan.rdb_stream)
        .await?;
    tokio::io::copy(&mut rdb, &mut socket)
        .await
        .map_err(|e| dr_core::Error::io(format!("sending the snapshot's RDB to {peer}"), e))?;
    for piece in &plan.stream {
        write(&mut socket, piece, &peer).await?;
    }
    // The replica acknowledges what it applied: REPLCONF ACK <offset>.
    loop {
        let command = next_command(&mut socket, &mut split, &peer).await?;
        if command.is("REPLCONF")
            && command
                .arg(1)
                .is_some_and(|a| a.eq_ignore_ascii_case(b"ACK"))
            && let Some(offset) = command
                .arg(2)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| o.parse::<u64>().ok())
            && offset >= plan.end
        {
            return Ok(());
        }
    }
}

async fn write(socket: &mut TcpStream, bytes: &[u8], peer: &str) -> dr_core::Result<()> {
    socket
        .write_all(bytes)
        .await
        .map_err(|e| dr_core::Error::io(format!("writing to the target {peer}"), e))
}

async fn next_command(
    socket: &mut TcpStream,
    split: &mut CommandSplitter,
    peer: &str,
) -> dr_core::Result<crate::replication::commands::StreamCommand> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(command) = split.next_command()? {
            return Ok(command);
        }
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| dr_core::Error::io(format!("reading from the target {peer}"), e))?;
        if n == 0 {
            return Err(Error::Closed {
                addr: peer.to_owned(),
                what: "replicating from the restore",
            }
            .into());
        }
        split.feed(&buf[..n]);
    }
}
