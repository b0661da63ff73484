//! [`PitrRestore`]: point-in-time recovery from a base backup and the WAL
//! archive, into a new data directory.
//!
//! 1. **Choose** the newest base backup that can reach the target; for a
//!    named restore point, the newest that is consistent before the first
//!    restore point of that name after it, found by reading the WAL's
//!    records back from the newest backup.
//! 2. **Check the WAL** from that backup's start along the timeline path to
//!    the target, in the archive, before anything is written: a missing
//!    segment fails the restore here, by name, with the target untouched.
//! 3. **Stage** the WAL beside the target, checking each segment; for a
//!    target time, read its records too: a time the archived WAL does not
//!    reach (no transaction after it, or the first one before the backup is
//!    consistent) fails the restore here, where PostgreSQL would fail only
//!    at the end of recovery. (A restore point name missing from the WAL
//!    already failed step 1.)
//! 4. **Extract** every tablespace's tar (tablespaces optionally moved),
//!    move the staged WAL in and write the recovery settings
//!    (`recovery.signal`, `restore_command`, the target,
//!    `recovery_target_action = promote`).
//! 5. Optionally **start** the server, wait for it to promote, and measure
//!    what was recovered: the last transaction replayed.

mod choose;
mod extract;
mod loss;
mod recovery;
mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dr_core::{
    ArchiveSource, Capabilities, Capability, ComponentId, JournalSource, Manifest, Operation,
    RecoveryReport, RecoveryTarget, Restore, RestoreRequest, SnapshotSource, Timeline, async_trait,
};

use crate::archive::{ArchiveListing, list_archive};
use crate::details::BaseBackupDetails;

use self::extract::{EXTRACT_STEP, chown_tree, sync_filesystems};
use self::loss::data_loss;
use self::recovery::wait_for_promotion;
use self::wal::WalPlan;
use tracing::Instrument;

/// Starts PostgreSQL on a restored data directory.
#[async_trait]
pub trait StartServer: Send + Sync {
    /// Starts the server on `data_dir` and returns how to connect to it as a
    /// superuser. It may return while the server is still recovering.
    async fn start(&self, data_dir: &Path) -> dr_core::Result<tokio_postgres::Config>;
}

/// The restore's first step, named `<this> <snapshot id>`.
pub(crate) const CHOOSE_STEP: &str = "choose base backup";

/// Restores one PostgreSQL cluster to a point in time.
pub struct PitrRestore {
    component: ComponentId,
    data_dir: PathBuf,
    tablespaces: BTreeMap<String, PathBuf>,
    owner: Option<(u32, u32)>,
    server: Option<Box<dyn StartServer>>,
}

impl std::fmt::Debug for PitrRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PitrRestore")
            .field("component", &self.component)
            .field("data_dir", &self.data_dir)
            .field("tablespaces", &self.tablespaces)
            .field("owner", &self.owner)
            .field("starts_server", &self.server.is_some())
            .finish()
    }
}

impl PitrRestore {
    /// Restores `component`'s backups into `data_dir`, which must not exist
    /// or be empty.
    pub fn new(component: ComponentId, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            component,
            data_dir: data_dir.into(),
            tablespaces: BTreeMap::new(),
            owner: None,
            server: None,
        }
    }

    /// Restores the tablespace that lived at `from` on the backed-up server
    /// into `to` instead (which must not exist or be empty).
    #[must_use]
    pub fn map_tablespace(mut self, from: impl Into<String>, to: impl Into<PathBuf>) -> Self {
        self.tablespaces.insert(from.into(), to.into());
        self
    }

    /// Gives the restored files to this user and group (the server's OS
    /// user, when restoring as root).
    #[must_use]
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// Starts the server after the restore and waits until it has replayed
    /// to the target and promoted. A server that stops answering while it
    /// replays fails the restore at once. How long replay may take is the
    /// caller's to bound (`tokio::time::timeout` around the restore): if it
    /// is cancelled while the server replays, the data directory is whole and
    /// the server is left running.
    #[must_use]
    pub fn start_with(mut self, server: impl StartServer + 'static) -> Self {
        self.server = Some(Box::new(server));
        self
    }
}

/// The WAL archive a restore reads: its segments, and its segment journals
/// where the store keeps them.
#[derive(Clone, Copy)]
struct Wal<'a> {
    segments: &'a dyn ArchiveSource,
    journals: Option<&'a dyn JournalSource>,
}

#[async_trait]
impl Restore for PitrRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with(Capability::PointInTime)
            .with(Capability::PositionTarget)
            .with(Capability::NamedRestorePoint)
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        let span = tracing::info_span!(
            "pitr_restore",
            component = %self.component,
            target = ?request.target,
            data_dir = %self.data_dir.display(),
        );
        let restored = self.restore_traced(request).instrument(span).await;
        match &restored {
            Ok(report) => tracing::info!(
                seconds = report.timeline.elapsed().as_secs_f64(),
                "restored"
            ),
            Err(error) => tracing::warn!(%error, "the restore failed"),
        }
        restored
    }
}

impl PitrRestore {
    async fn restore_traced(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        let mut timeline = Timeline::start_now();
        let archive = Wal {
            segments: request.archive.ok_or_else(|| {
                dr_core::Error::invalid(
                    "restore request",
                    "a base backup needs the WAL archive to become consistent",
                )
            })?,
            journals: request.journals,
        };

        // Read before the archive is listed: what it covers is then listed.
        // Only the latest point needs it; a damaged record costs only the
        // measurement, and says so.
        let coverage = match request.target {
            RecoveryTarget::Latest if request.incident_at.is_some() => {
                match archive.segments.coverage(&self.component).await {
                    Ok(coverage) => coverage,
                    Err(e) => {
                        tracing::warn!(error = %e, "the archive's coverage record is unreadable");
                        timeline.mark(format!(
                            "warning: the archive's coverage record is unreadable ({e}); \
                             the data lost is bounded from the last transaction"
                        ))?;
                        None
                    }
                }
            }
            _ => None,
        };
        let (manifest, listed) = timeline
            .step_named(
                self.choose_base(request.snapshots, archive, request.target),
                |(manifest, _)| format!("{CHOOSE_STEP} {}", manifest.id),
            )
            .await?;
        let facts = BaseBackupDetails::of(&manifest)?;
        tracing::info!(
            base_backup = %manifest.id,
            start = %facts.start_lsn,
            end = %facts.end_lsn,
            "chose the base backup"
        );

        let plan = timeline
            .step_named(
                async {
                    let listing = match listed {
                        Some(listing) => listing,
                        None => {
                            list_archive(
                                archive.segments,
                                archive.journals,
                                &self.component,
                                facts.wal_segment_size,
                            )
                            .await?
                        }
                    };
                    let plan = self
                        .plan_wal(archive, &listing, &facts, request.target)
                        .await?;
                    self.check_destinations(&facts)?;
                    Ok::<_, dr_core::Error>(plan)
                },
                |plan| format!("check WAL ({} segments)", plan.segments.len()),
            )
            .await?;

        // The WAL first, beside the target: a damaged segment fails the
        // restore before the target directory is touched.
        let staging = self.staging_dir();
        let staged = timeline
            .step_named(
                async {
                    let staged = self
                        .stage_wal(archive, &facts, &plan, request.target, &staging)
                        .await;
                    if staged.is_err() {
                        std::fs::remove_dir_all(&staging).ok();
                    }
                    staged
                },
                |staged| format!("fetch and check WAL ({} segments)", staged.segments),
            )
            .await?;
        for (name, why) in &staged.read_from_pieces {
            timeline.mark(format!(
                "warning: WAL segment {name}'s whole object is unreadable ({why}); \
                 its pieces, which hold the same bytes, were used"
            ))?;
        }

        timeline
            .step(EXTRACT_STEP, async {
                let extracted = self
                    .extract(request.snapshots, &manifest, &facts, request.progress)
                    .await;
                if extracted.is_err() {
                    // Leave nothing half-restored: the destinations were empty.
                    std::fs::remove_dir_all(&staging).ok();
                    std::fs::remove_dir_all(&self.data_dir).ok();
                    for dir in self.tablespace_targets(&facts).into_values() {
                        std::fs::remove_dir_all(dir).ok();
                    }
                }
                extracted
            })
            .await?;

        timeline
            .step(
                "recovery settings and sync to disk",
                self.finish_files(request.target, &plan, &facts, &staging),
            )
            .await?;

        let report = |timeline: Timeline| {
            let report = RecoveryReport::new(
                self.component.clone(),
                Operation::Restore,
                request.objectives,
                timeline,
            );
            match request.incident_at {
                Some(at) => report.with_incident_at(at),
                None => report,
            }
        };
        let Some(server) = &self.server else {
            return Ok(report(timeline));
        };

        let promoted = timeline
            .step("replay WAL and promote", async {
                let config = server.start(&self.data_dir).await?;
                let promoted = wait_for_promotion(&config).await?;
                // Recovery is over: the staged WAL is needed no more.
                std::fs::remove_dir_all(&staging).ok();
                Ok::<_, dr_core::Error>(promoted)
            })
            .await?;

        Ok(data_loss(
            report(timeline),
            &request,
            &manifest,
            &promoted,
            coverage.as_ref(),
        ))
    }
}

impl PitrRestore {
    /// Chooses the base backup for `target`, with the archive's listing
    /// when choosing read it already (for a restore point).
    async fn choose_base(
        &self,
        snapshots: &dyn SnapshotSource,
        archive: Wal<'_>,
        target: &RecoveryTarget,
    ) -> dr_core::Result<(Manifest, Option<ArchiveListing>)> {
        Ok(match target {
            RecoveryTarget::RestorePoint(name) => {
                let (manifest, listing) = self
                    .choose_for_restore_point(snapshots, archive, name)
                    .await?;
                (manifest, Some(listing))
            }
            target => (self.choose(snapshots, target).await?, None),
        })
    }

    /// Writes the recovery settings, gives the files their owner and makes
    /// everything durable, before anything reports it restored or starts
    /// on it.
    async fn finish_files(
        &self,
        target: &RecoveryTarget,
        plan: &WalPlan,
        facts: &BaseBackupDetails,
        staging: &Path,
    ) -> dr_core::Result<()> {
        self.write_recovery_settings(target, plan)?;
        let dirs: Vec<PathBuf> = [self.data_dir.clone(), staging.to_owned()]
            .into_iter()
            .chain(self.tablespace_targets(facts).into_values())
            .collect();
        let owner = self.owner;
        tokio::task::spawn_blocking(move || {
            if let Some((uid, gid)) = owner {
                dirs.iter()
                    .try_for_each(|d| chown_tree(d, uid, gid))
                    .map_err(|e| dr_core::Error::io("changing owners", e))?;
            }
            sync_filesystems(&dirs)
        })
        .await
        .map_err(|e| dr_core::Error::io("finishing the restore", std::io::Error::other(e)))?
    }
}

impl PitrRestore {
    /// Where the restore stages the WAL that recovery replays: a private
    /// directory beside the data directory (`<parent>/.<name>.drkit-wal`),
    /// never inside it, so that the restored data directory holds exactly
    /// what the base backup's manifest lists (`pg_verifybackup` checks it
    /// as it is, given this directory with `--wal-directory`). The recovery
    /// settings' `restore_command` reads from it. A restore that starts the
    /// server ([`PitrRestore::start_with`]) removes it once the server has
    /// promoted; otherwise it stays until the caller has started the server,
    /// seen it promote, and removes it. It must be absent or empty when the
    /// restore begins, like the data directory.
    pub fn staging_dir(&self) -> PathBuf {
        let name = self
            .data_dir
            .file_name()
            .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
        self.data_dir.with_file_name(format!(".{name}.drkit-wal"))
    }

    fn tablespace_targets(&self, facts: &BaseBackupDetails) -> BTreeMap<String, PathBuf> {
        facts
            .tablespaces
            .iter()
            .map(|(archive, location)| {
                let to = self
                    .tablespaces
                    .get(location)
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(location));
                (archive.clone(), to)
            })
            .collect()
    }

    /// The data directory and every tablespace target must be absent or empty.
    fn check_destinations(&self, facts: &BaseBackupDetails) -> dr_core::Result<()> {
        let targets = [self.data_dir.clone(), self.staging_dir()]
            .into_iter()
            .chain(self.tablespace_targets(facts).into_values());
        for dir in targets {
            match std::fs::read_dir(&dir) {
                Ok(mut entries) => {
                    if entries.next().is_some() {
                        return Err(dr_core::Error::AlreadyExists {
                            what: format!("{} (a restore needs it absent or empty)", dir.display()),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(dr_core::Error::io(format!("checking {}", dir.display()), e)),
            }
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> dr_core::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| dr_core::Error::io(format!("creating {}", dir.display()), e))
}
