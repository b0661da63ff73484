//! [`LiveKitSnapshot`]: dr-core's `Backup` of a LiveKit server's state.

use async_trait::async_trait;
use dr_core::{
    Backup, BackupBase, BackupReport, BackupRequest, Capabilities, Capability, ComponentId,
    Finding, Manifest, Problem, RecoveryPoint, SnapshotCommit, SnapshotDetails, SnapshotId,
    SnapshotSource, StreamName, Timeline, VerificationReport,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::LiveKit;
use crate::registry::DesiredRooms;
use crate::state::{LiveKitState, StateCounts, Unreadable};

/// The stream a full LiveKit snapshot stores its [`LiveKitState`] in, as
/// canonical JSON.
pub const STATE_STREAM: &str = "state.json";

/// What a LiveKit snapshot records in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveKitSnapshotDetails {
    /// The server it was read from.
    pub url: String,
    /// The SHA-256 of the state's canonical JSON, in hex.
    pub sha256: String,
    /// How many of each thing the state holds.
    pub counts: StateCounts,
    /// What could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
    /// Set on a confirmation: the state was read again and found the same
    /// as in this full snapshot (the manifest's `depends_on`), so nothing
    /// was stored but the confirmation itself. A restore of it restores
    /// that snapshot's state; its recovery point is the confirmation's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged_since: Option<SnapshotId>,
}

impl SnapshotDetails for LiveKitSnapshotDetails {
    const KEY: &'static str = "livekit.state";
}

impl LiveKitSnapshotDetails {
    /// The details of `manifest`, or `None` for a snapshot of another kind.
    ///
    /// # Errors
    /// [`dr_core::Error`] (corrupt) if they are there and do not read.
    pub fn of(manifest: &Manifest) -> dr_core::Result<Option<Self>> {
        manifest.details()
    }

    /// The full snapshot whose stream holds this one's state: itself, or
    /// the one a confirmation confirms.
    pub fn state_snapshot(&self, manifest: &Manifest) -> SnapshotId {
        self.unchanged_since.unwrap_or(manifest.id)
    }
}

/// A snapshot of a LiveKit server: its [`LiveKitState`] read through the
/// API, with the rooms' requests from a [`DesiredRooms`] registry.
///
/// Cheap enough to run every minute: built on a base
/// ([`BackupRequest::base`], a capability of [`Capability::Incremental`]),
/// a state found the same as the base's stores only a confirmation (a
/// manifest of a few hundred bytes, `depends_on` the base) that is a
/// restorable point of its own, so the age of the last snapshot says how
/// old the newest known state is. A changed state is stored whole, as one
/// stream the repository cuts into chunks: what did not change is not
/// stored again.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::{Backup, BackupBase, BackupRequest};
/// use dr_livekit::{DesiredRooms, LiveKit, LiveKitSnapshot};
///
/// let sfu = LiveKit::new("http://livekit.livekit:7880", "APIkey", "secret")?;
/// let desired = DesiredRooms::new();
/// let snapshot = LiveKitSnapshot::new("livekit/sfu".parse()?, sfu).desired_rooms(desired);
/// let report = snapshot
///     .backup(BackupRequest::new(repo).base(BackupBase::LatestFull(repo)))
///     .await?;
/// println!("{} ({} bytes)", report.manifest.id, report.manifest.total_size());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LiveKitSnapshot {
    component: ComponentId,
    livekit: LiveKit,
    desired: Option<DesiredRooms>,
}

impl LiveKitSnapshot {
    /// A snapshot of `livekit` as `component`.
    pub fn new(component: ComponentId, livekit: LiveKit) -> Self {
        Self {
            component,
            livekit,
            desired: None,
        }
    }

    /// Takes each room's recorded request from `desired`.
    #[must_use]
    pub fn desired_rooms(mut self, desired: DesiredRooms) -> Self {
        self.desired = Some(desired);
        self
    }

    /// The server.
    pub fn livekit(&self) -> &LiveKit {
        &self.livekit
    }
}

/// Whether `manifest` is a LiveKit snapshot (full or a confirmation).
pub fn is_livekit_snapshot(manifest: &Manifest) -> bool {
    manifest.metadata.contains_key(LiveKitSnapshotDetails::KEY)
}

/// `component`'s committed LiveKit snapshots, oldest first.
///
/// # Errors
/// The source could not list them.
pub async fn livekit_snapshots(
    source: &dyn SnapshotSource,
    component: &ComponentId,
) -> dr_core::Result<Vec<Manifest>> {
    let mut all = source.snapshots(component).await?;
    all.retain(is_livekit_snapshot);
    Ok(all)
}

/// Reads the state a LiveKit snapshot holds back whole (a confirmation's
/// from the snapshot it confirms) and checks it against the recorded
/// SHA-256 and counts.
///
/// # Errors
/// It is not a LiveKit snapshot, or the state does not read or differs
/// from its record.
pub async fn verify_snapshot(
    source: &dyn SnapshotSource,
    manifest: &Manifest,
) -> dr_core::Result<VerificationReport> {
    let mut timeline = Timeline::start_now();
    let details = LiveKitSnapshotDetails::of(manifest)?.ok_or_else(|| {
        dr_core::Error::invalid(
            format!("snapshot {}", manifest.id),
            "it is not a LiveKit snapshot",
        )
    })?;
    let state = timeline
        .step(
            "read the state back",
            crate::restore::read_state(source, manifest, &details),
        )
        .await?;
    let mut findings = Vec::new();
    if state.counts() != details.counts {
        findings.push(Finding::new(
            STATE_STREAM,
            Problem::Malformed {
                reason: format!(
                    "it holds {:?}, the record says {:?}",
                    state.counts(),
                    details.counts
                ),
            },
        ));
    }
    Ok(VerificationReport {
        snapshot: manifest.id,
        checked: state.rooms.len() as u64,
        bytes: manifest.total_size(),
        findings,
        timeline,
    })
}

/// The latest LiveKit snapshot of `component` in `source` and its
/// details, if there is one.
pub(crate) async fn latest(
    source: &dyn SnapshotSource,
    component: &ComponentId,
) -> dr_core::Result<Option<(Manifest, LiveKitSnapshotDetails)>> {
    let snapshots = source.snapshots(component).await?;
    for manifest in snapshots.into_iter().rev() {
        if let Some(details) = LiveKitSnapshotDetails::of(&manifest)? {
            return Ok(Some((manifest, details)));
        }
    }
    Ok(None)
}

#[async_trait]
impl Backup for LiveKitSnapshot {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with(Capability::Incremental)
    }

    async fn backup(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let mut timeline = Timeline::start_now();
        let read_at = Timestamp::now();
        let state = timeline
            .step(
                "read the state (rooms, participants, egress, ingress, SIP, agents)",
                async {
                    Ok::<_, dr_core::Error>(
                        LiveKitState::read(&self.livekit, self.desired.as_ref()).await?,
                    )
                },
            )
            .await?;
        let json = state.to_canonical_json()?;
        let sha256 = sha256_hex(&json);
        let base = match request.base {
            None => None,
            Some(BackupBase::LatestFull(source)) => latest(source, &self.component).await?,
            Some(BackupBase::Snapshot(source, id)) => {
                let manifest = source.manifest(&id).await?;
                let details = LiveKitSnapshotDetails::of(&manifest)?.ok_or_else(|| {
                    dr_core::Error::invalid(
                        format!("snapshot {id}"),
                        "it is not a LiveKit snapshot, so a LiveKit snapshot cannot build on it",
                    )
                })?;
                Some((manifest, details))
            }
            // A kind of base this crate does not know: a full snapshot.
            Some(_) => None,
        };
        let unchanged_since = base
            .filter(|(_, details)| details.sha256 == sha256)
            .map(|(manifest, details)| details.state_snapshot(&manifest));
        let details = LiveKitSnapshotDetails {
            url: self.livekit.url().to_owned(),
            sha256,
            counts: state.counts(),
            unreadable: state.unreadable.clone(),
            unchanged_since,
        };
        let mut writer = request.sink.begin(&self.component, read_at).await?;
        if unchanged_since.is_none() {
            let name: StreamName = STATE_STREAM.parse()?;
            let stored = timeline
                .step(
                    "store the state",
                    writer.add_stream(&name, &mut json.as_slice()),
                )
                .await;
            if let Err(error) = stored {
                writer.abort().await.ok();
                return Err(error);
            }
        }
        let mut commit = SnapshotCommit::new(RecoveryPoint::new(read_at));
        for (key, value) in &request.labels {
            commit = commit.label(key, value);
        }
        if let Some(base) = unchanged_since {
            commit = commit.depends_on(base);
        }
        let commit = commit.details(&details)?;
        let step = match unchanged_since {
            Some(base) => format!("commit (unchanged since {base})"),
            None => "commit".to_owned(),
        };
        let manifest = timeline.step(step, writer.commit(commit)).await?;
        Ok(BackupReport { manifest, timeline })
    }
}

/// The SHA-256 of `bytes` in lowercase hexadecimal: a state's digest, as
/// recorded in its snapshot's details and checked when it is read back.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
