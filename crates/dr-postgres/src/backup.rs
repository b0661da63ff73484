//! [`BaseBackup`]: a physical base backup streamed from the replication
//! protocol straight into a snapshot sink, one stream per tablespace tar
//! plus the backup manifest, with no temporary copy of the cluster.
//! Stored in a deduplicating repository, a second backup of an unchanged
//! cluster stores almost nothing new: every backup is incremental. A delta
//! backup (a [`BackupRequest`] with a [`BackupBase`]) goes further for a
//! cluster that changed: only the changed bytes of changed pages.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use dr_core::{
    Backup, BackupBase, BackupReport, BackupRequest, Capabilities, Capability, ComponentId, Lsn,
    Manifest, Position, RecoveryPoint, SnapshotCommit, SnapshotSource, SnapshotSourceExt,
    SnapshotWriter, StreamLayout, StreamName, Timeline, async_trait,
};
use jiff::Timestamp;

use crate::chunks::{ChannelReader, Piece};
use crate::delta::{DELTA_STREAM, DeltaFiles, store_delta};
use crate::details::BaseBackupDetails;
use crate::error::Error;
use crate::metered::Meter;
use crate::replication::{
    BaseBackupEvent, BaseBackupOptions, BaseBackupStream, ManifestChecksums, ReplicationClient,
    SystemIdentity, Tls,
};
use crate::verify::archived_files;
use crate::wal::WalSegmentSize;
use tracing::Instrument;

/// The stream holding the backup manifest.
pub const MANIFEST_STREAM: &str = "backup_manifest";
/// The label every base backup snapshot carries: `kind=base`.
pub const KIND_LABEL: (&str, &str) = ("kind", "base");

/// The backup's step that streams the archives, as its timeline names it.
const STREAM_STEP: &str = "stream archives";

/// Whether `manifest` is a base backup's (labelled [`KIND_LABEL`]).
pub fn is_base_backup(manifest: &Manifest) -> bool {
    manifest.labels.get(KIND_LABEL.0).map(String::as_str) == Some(KIND_LABEL.1)
}

/// The committed base backups of `component` in `source`, oldest first.
///
/// # Errors
/// The source cannot list its snapshots.
pub async fn base_backups(
    source: &dyn SnapshotSource,
    component: &ComponentId,
) -> dr_core::Result<Vec<Manifest>> {
    snapshots_where(source, component, is_base_backup).await
}

/// The committed snapshots of `component` in `source` that `keep`, oldest first.
pub(crate) async fn snapshots_where(
    source: &dyn SnapshotSource,
    component: &ComponentId,
    keep: fn(&Manifest) -> bool,
) -> dr_core::Result<Vec<Manifest>> {
    let mut kept: Vec<Manifest> = source
        .snapshots(component)
        .await?
        .into_iter()
        .filter(keep)
        .collect();
    kept.sort_by_key(|m| m.id);
    Ok(kept)
}

/// Takes physical base backups of one PostgreSQL cluster.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> Result<(), dr_core::Error> {
/// use dr_core::{Backup, BackupBase, BackupRequest};
/// use dr_postgres::{BaseBackup, Tls};
///
/// let config: tokio_postgres::Config = "host=db1 user=replicator password=secret".parse().map_err(|e| dr_core::Error::invalid("config", format!("{e}")))?;
/// let backup = BaseBackup::new("postgres/main".parse()?, config, Tls::none());
/// // A full backup, then a delta against it.
/// let full = backup.backup(BackupRequest::new(repo).label("trigger", "nightly")).await?;
/// let delta = backup
///     .backup(BackupRequest::new(repo).base(BackupBase::LatestFull(repo)))
///     .await?;
/// assert_eq!(delta.manifest.depends_on, Some(full.manifest.id));
/// println!("{} took {:?}", delta.manifest.id, delta.timeline.elapsed());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BaseBackup {
    component: ComponentId,
    config: tokio_postgres::Config,
    tls: Tls,
    label: String,
    fast_checkpoint: bool,
    max_rate_kbps: Option<u32>,
    checksums: ManifestChecksums,
}

/// The full backup a delta backup is stored against.
struct Full<'a> {
    manifest: Manifest,
    /// Archive name → the files its backup manifest lists in that archive.
    files: BTreeMap<String, HashSet<String>>,
    source: &'a dyn SnapshotSource,
}

impl BaseBackup {
    /// Backs up the cluster `config` points at (a user with the REPLICATION
    /// attribute), stored as `component`.
    pub fn new(component: ComponentId, config: tokio_postgres::Config, tls: Tls) -> Self {
        Self {
            component,
            config,
            tls,
            label: "drkit base backup".to_owned(),
            fast_checkpoint: true,
            max_rate_kbps: None,
            checksums: ManifestChecksums::Crc32c,
        }
    }

    /// The full backup a request builds on: a delta backup stores every
    /// file that full backup also has as its XOR with that file (see
    /// [`DELTA_STREAM`]). Pages that did not change then cost nearly
    /// nothing, and changed pages only their changed bytes, where
    /// deduplication alone stores every changed page again.
    /// [`BackupBase::LatestFull`] with no full backup of the cluster yet
    /// takes a full one.
    ///
    /// A delta backup is restored from its own data and its full backup's,
    /// so the repository keeps the full backup as long as a delta stored
    /// against it ([`dr_core::Manifest::depends_on`]). Deltas grow as the
    /// cluster drifts from the full backup: take a full backup (a request
    /// without a base) from time to time.
    async fn full_backup<'a>(
        &self,
        base: Option<BackupBase<'a>>,
        system_identifier: u64,
    ) -> dr_core::Result<Option<Full<'a>>> {
        let is_full_of_this_cluster = |m: &Manifest| {
            m.component == self.component
                && is_base_backup(m)
                && m.depends_on.is_none()
                && BaseBackupDetails::of(m).is_ok_and(|d| d.system_identifier == system_identifier)
        };
        let (source, manifest) = match base {
            None => return Ok(None),
            Some(BackupBase::LatestFull(source)) => {
                let latest = source
                    .snapshots(&self.component)
                    .await?
                    .into_iter()
                    .filter(|m| is_full_of_this_cluster(m))
                    .max_by_key(|m| m.id);
                match latest {
                    Some(manifest) => (source, manifest),
                    None => return Ok(None),
                }
            }
            Some(BackupBase::Snapshot(source, id)) => {
                let manifest = source.manifest(&id).await?;
                if !is_full_of_this_cluster(&manifest) {
                    return Err(dr_core::Error::invalid(
                        format!("base snapshot {id}"),
                        format!(
                            "a delta backup of {} builds on a full base backup of the same \
                             cluster (system identifier {system_identifier})",
                            self.component
                        ),
                    ));
                }
                (source, manifest)
            }
            Some(_) => {
                return Err(dr_core::Error::invalid(
                    "backup base",
                    "a kind of base this build does not know",
                ));
            }
        };
        let files = archived_files(source, &manifest).await?;
        Ok(Some(Full {
            manifest,
            files,
            source,
        }))
    }

    /// The label the server writes into `backup_label`.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Whether to ask for an immediate checkpoint (the default) rather than
    /// waiting for the next spread one.
    #[must_use]
    pub fn fast_checkpoint(mut self, on: bool) -> Self {
        self.fast_checkpoint = on;
        self
    }

    /// The file checksums the server puts in the backup manifest, which
    /// [`verify_base_backup`](crate::verify_base_backup) checks: CRC-32C by
    /// default, as `pg_basebackup` does. The repository authenticates and
    /// checks every stored byte itself; these catch a file that reaches the
    /// repository wrong. With SHA-256, sending a pgbench cluster took the
    /// server 4 to 16% longer here.
    #[must_use]
    pub fn manifest_checksums(mut self, checksums: ManifestChecksums) -> Self {
        self.checksums = checksums;
        self
    }

    /// Limits the server's send rate (KiB/s).
    #[must_use]
    pub fn max_rate_kbps(mut self, rate: Option<u32>) -> Self {
        self.max_rate_kbps = rate;
        self
    }
}

#[async_trait]
impl Backup for BaseBackup {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with(Capability::Incremental)
    }

    async fn backup(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let span = tracing::info_span!(
            "base_backup",
            component = %self.component,
            delta = request.base.is_some(),
        );
        let taken = self.backup_traced(request).instrument(span).await;
        match &taken {
            Ok(report) => tracing::info!(
                snapshot = %report.manifest.id,
                bytes = report.manifest.total_size(),
                seconds = report.timeline.elapsed().as_secs_f64(),
                "base backup committed"
            ),
            Err(error) => tracing::warn!(%error, "the base backup failed; nothing was committed"),
        }
        taken
    }
}

impl BaseBackup {
    async fn backup_traced(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let mut timeline = Timeline::start_now();
        let Connected {
            client,
            identity,
            segment_size,
            version,
            full,
        } = timeline.step("connect", self.connect(request.base)).await?;

        // Sizing the tablespaces first costs the server a scan of its data
        // directory: only for a caller who asked for progress.
        let options = BaseBackupOptions::new(&self.label)
            .fast_checkpoint(self.fast_checkpoint)
            .manifest(Some(self.checksums))
            .max_rate_kbps(self.max_rate_kbps)
            .progress(request.progress.is_some());
        let addr = client.addr().to_owned();
        let stream = timeline
            .step("checkpoint", async {
                Ok::<_, dr_core::Error>(client.base_backup(&options).await?)
            })
            .await?;

        let (start_lsn, start_timeline) = (stream.start_lsn(), stream.timeline());
        let estimate = stream
            .tablespaces()
            .iter()
            .map(|t| t.size_kib.map(|kib| kib * 1024))
            .sum::<Option<u64>>();
        let meter = Meter::new(request.progress, STREAM_STEP, estimate);
        let mut events = ReadAhead::spawn(stream);
        let (writer, (end_lsn, end_timeline, tablespaces)) = timeline
            .step(STREAM_STEP, async {
                let mut writer = request
                    .sink
                    .begin(&self.component, Timestamp::now())
                    .await?;
                let streamed =
                    stream_archives(&mut events, writer.as_mut(), &addr, full.as_ref(), &meter)
                        .await;
                meter.finish();
                match streamed {
                    Ok(done) => Ok((writer, done)),
                    Err(e) => {
                        writer.abort().await.ok();
                        Err(e)
                    }
                }
            })
            .await?;

        let point = RecoveryPoint::new(Timestamp::now()).with_position(Position::Postgres {
            system_identifier: identity.system_id,
            timeline: end_timeline,
            lsn: end_lsn,
        });
        let mut commit = SnapshotCommit::new(point);
        for (key, value) in &request.labels {
            commit = commit.label(key, value);
        }
        let commit = commit
            .label(KIND_LABEL.0, KIND_LABEL.1)
            .details(&BaseBackupDetails {
                start_lsn,
                start_timeline,
                end_lsn,
                end_timeline,
                system_identifier: identity.system_id,
                wal_segment_size: segment_size,
                server_version: version,
                tablespaces,
            })?;
        let commit = match &full {
            Some(full) => commit.depends_on(full.manifest.id),
            None => commit,
        };
        let manifest = timeline.step("commit", writer.commit(commit)).await?;
        if let Some(stream) = events.finish().await {
            stream.into_client().await?.close().await.ok();
        }
        Ok(BackupReport { manifest, timeline })
    }
}

/// A replication connection, with what a backup needs to know first.
struct Connected<'a> {
    client: ReplicationClient,
    identity: SystemIdentity,
    segment_size: WalSegmentSize,
    version: String,
    /// The full backup a delta is stored against.
    full: Option<Full<'a>>,
}

impl BaseBackup {
    /// Connects, identifies the cluster and finds the full backup `base`
    /// names, checking it is of this cluster.
    async fn connect<'a>(&self, base: Option<BackupBase<'a>>) -> dr_core::Result<Connected<'a>> {
        let mut client = ReplicationClient::connect(&self.config, &self.tls).await?;
        let identity = client.identify_system().await?;
        let segment_size = WalSegmentSize::new(client.wal_segment_size().await?)?;
        let version = client.server_version().unwrap_or("unknown").to_owned();
        let full = self.full_backup(base, identity.system_id).await?;
        Ok(Connected {
            client,
            identity,
            segment_size,
            version,
            full,
        })
    }
}

/// Streams every archive and the manifest into `writer`, each archive
/// against `full`'s same archive for a delta backup (then recording which
/// files were paired, [`DELTA_STREAM`]); returns the end position, its
/// timeline, and each tablespace archive's server location.
async fn stream_archives(
    stream: &mut ReadAhead,
    writer: &mut dyn SnapshotWriter,
    addr: &str,
    full: Option<&Full<'_>>,
    meter: &Meter<'_>,
) -> dr_core::Result<(Lsn, u32, BTreeMap<String, String>)> {
    let mut tablespaces = BTreeMap::new();
    let mut manifest = false;
    let mut paired = DeltaFiles::new();
    while let Some(event) = stream.next().await? {
        match event {
            BaseBackupEvent::ArchiveStart { name, tablespace } => {
                if let Some(location) = tablespace {
                    tablespaces.insert(name.clone(), location);
                }
                let stream_name: StreamName = name.parse()?;
                let against = full.and_then(|f| {
                    f.manifest.stream(&stream_name)?;
                    Some((f, f.files.get(&name)?.clone()))
                });
                match against {
                    Some((full, listed)) => {
                        let base = full
                            .source
                            .open_stream(&full.manifest.id, &stream_name)
                            .await?;
                        let mut input = meter.reader(&mut *stream);
                        let files =
                            store_delta(&mut input, base, listed, writer, &stream_name).await?;
                        paired.insert(name, files);
                    }
                    None => {
                        let mut input = meter.reader(&mut *stream);
                        writer
                            .add_stream_with(&stream_name, &mut input, StreamLayout::Tar)
                            .await?;
                    }
                }
            }
            BaseBackupEvent::ManifestStart => {
                manifest = true;
                let name: StreamName = MANIFEST_STREAM.parse()?;
                writer.add_stream(&name, stream).await?;
            }
            BaseBackupEvent::End { end, timeline } => {
                if !manifest {
                    return Err(Error::Protocol {
                        addr: addr.to_owned(),
                        reason: "the server sent no backup manifest".into(),
                    }
                    .into());
                }
                if full.is_some() {
                    let json = serde_json::to_vec(&paired)
                        .map_err(|e| dr_core::Error::invalid(DELTA_STREAM, e.to_string()))?;
                    writer
                        .add_stream(&DELTA_STREAM.parse()?, &mut json.as_slice())
                        .await?;
                }
                return Ok((end, timeline, tablespaces));
            }
            BaseBackupEvent::Data(_) | BaseBackupEvent::Progress { .. } => {}
        }
    }
    Err(Error::Protocol {
        addr: addr.to_owned(),
        reason: "the base backup ended without its end position".into(),
    }
    .into())
}

/// Events of a base backup read from the server by a task of its own, up to
/// [`READ_AHEAD`] messages ahead of the backup storing them. Read inline,
/// the server stopped sending whenever the backup paused to cut, hash or
/// wait for a pack upload: its socket buffer holds a few messages only.
struct ReadAhead {
    reader: ChannelReader<crate::error::Result<BaseBackupEvent>>,
    /// Hands the stream back once it ended.
    pump: Option<tokio::task::JoinHandle<Option<BaseBackupStream>>>,
}

/// Messages read ahead: the server sends `Data` of 32 KiB, so about 16 MiB.
const READ_AHEAD: usize = 512;

impl ReadAhead {
    fn spawn(mut stream: BaseBackupStream) -> Self {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let pump = tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        if tx.send(Ok(event)).await.is_err() {
                            return None;
                        }
                    }
                    Ok(None) => return Some(stream),
                    Err(e) => {
                        tx.send(Err(e)).await.ok();
                        return None;
                    }
                }
            }
        });
        Self {
            reader: ChannelReader::new(rx, archive_content),
            pump: Some(pump),
        }
    }

    /// The next event (after what a reader left); `None` once the stream ended.
    async fn next(&mut self) -> crate::error::Result<Option<BaseBackupEvent>> {
        self.reader.next_item().await.transpose()
    }
}

impl ReadAhead {
    /// The stream back, once every event was read; `None` if it failed.
    async fn finish(mut self) -> Option<BaseBackupStream> {
        self.pump.take()?.await.ok().flatten()
    }
}

impl Drop for ReadAhead {
    /// A backup that stops early stops reading from the server.
    fn drop(&mut self) {
        if let Some(pump) = &self.pump {
            pump.abort();
        }
    }
}

/// The current archive's content, up to the next event that is not `Data`.
impl AsyncRead for ReadAhead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

/// An archive's content is its `Data`; any other event but progress ends it.
fn archive_content(
    event: crate::error::Result<BaseBackupEvent>,
) -> Piece<crate::error::Result<BaseBackupEvent>> {
    match event {
        Ok(BaseBackupEvent::Data(data)) => Piece::Bytes(data),
        Ok(BaseBackupEvent::Progress { .. }) => Piece::Skip,
        Ok(event) => Piece::Stop(Ok(event)),
        Err(e) => Piece::Fail(io::Error::other(e)),
    }
}
