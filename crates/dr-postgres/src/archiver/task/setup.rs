//! Connecting: checking the server against the archive, the slot, and where streaming starts.

use std::time::Instant;

use dr_core::{Error, ErrorKind, Lsn};
use jiff::Timestamp;

use crate::archive::{ArchiveListing, ArchivedWal, Coverage, archived_header, list_archive};
use crate::replication::{
    CreateSlotOptions, ReplicationClient, SlotPosition, SystemIdentity, WalStream,
};
use crate::wal::{TimelinePath, WalSegment, WalSegmentSize};

use super::coverage::waits_for_every_commit;
use super::{Current, Task, other_cluster, unavailable};

/// Where to start streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// The segment to stream from its start.
    segment: WalSegment,
    /// How much of it the archive already holds (contiguous from 0).
    stored: u32,
    /// WAL durable in the archive along the way to here.
    durable: Lsn,
}

impl Task {
    /// Connects, checks the server against the archive, finds where to
    /// start, and starts streaming.
    pub(super) async fn setup(&mut self) -> dr_core::Result<(WalStream, Current)> {
        let archiver = &self.archiver;
        let mut client = match &archiver.cluster {
            None => ReplicationClient::connect(&archiver.config, &archiver.tls).await?,
            Some(cluster) => {
                let application = archiver
                    .config
                    .get_application_name()
                    .unwrap_or("drkit_wal");
                let config = super::super::cluster::primary_config(cluster, application).await?;
                ReplicationClient::connect(&config, &cluster.tls).await?
            }
        };
        let client_addr = client.addr().to_owned();
        self.status.connections += 1;
        let identity = client.identify_system().await?;
        let names = client.show("synchronous_standby_names").await?;
        let application = archiver
            .config
            .get_application_name()
            .unwrap_or("drkit_wal");
        self.required_for_commits = waits_for_every_commit(&names, application);
        self.coverage.checked_at = Some(Instant::now());
        let bytes = client.wal_segment_size().await?;
        let size = WalSegmentSize::new(bytes).map_err(|reason| {
            Error::invalid(
                format!("wal_segment_size of {}", client.addr()),
                reason.to_string(),
            )
        })?;
        if let Some(known) = self.system_id
            && known != identity.system_id
        {
            return Err(other_cluster(&client, identity.system_id, known));
        }
        let slot = self.ensure_slot(&mut client).await?;
        let listing = list_archive(
            archiver.source.as_ref(),
            archiver.journal_source.as_deref(),
            &archiver.component,
            size,
        )
        .await?;
        if self.system_id.is_none() {
            let header = archived_header(
                archiver.source.as_ref(),
                archiver.journal_source.as_deref(),
                &archiver.component,
                &listing,
                size,
            )
            .await?;
            if let Some(header) = header {
                if header.system_id != identity.system_id {
                    return Err(other_cluster(&client, identity.system_id, header.system_id));
                }
                if u64::from(header.segment_size) != size.bytes() {
                    return Err(Error::invalid(
                        format!("PostgreSQL server {}", client.addr()),
                        format!(
                            "its WAL segments have {} bytes, the archive of {}'s have {}",
                            size.bytes(),
                            archiver.component,
                            header.segment_size
                        ),
                    ));
                }
            }
            self.system_id = Some(identity.system_id);
        }
        self.histories = listing.histories.clone();
        let plan = self
            .plan(&mut client, &identity, &slot, &listing, size)
            .await?;
        self.ensure_histories(&mut client, plan.segment.timeline)
            .await?;
        // A journal is reopened, so that a failed append is not built on.
        self.journals.current = None;
        // Journals of segments stored whole since: left by a stop in between.
        if let Some(journals) = &self.archiver.journal_sink {
            for segment in &listing.journals {
                if listing.segments.get(segment) == Some(&Coverage::Complete)
                    && !listing.complete_in_pieces.contains(segment)
                {
                    let name = ArchivedWal::Segment(*segment).name(size);
                    journals
                        .remove_journal(&self.archiver.component, &name)
                        .await?;
                }
            }
        }
        // Segments whose whole store failed or was cut short: durable in
        // pieces, stored whole in the background now.
        for &segment in &listing.complete_in_pieces {
            self.store_whole_later(segment, None, size).await?;
        }

        self.slot_restart = slot.restart_lsn;
        self.status.system_id = Some(identity.system_id);
        self.status.timeline = Some(plan.segment.timeline);
        // Not the maximum with what was stored before: after a failover the
        // archive may hold WAL of the old timeline beyond the switch point,
        // which says nothing about the new timeline's WAL at those positions.
        self.status.flushed = plan.durable;
        self.status.received = plan.segment.start(size);
        self.server_reported(identity.xlogpos, Timestamp::now());
        self.publish();

        let stream = client
            .start_replication(
                Some(&self.archiver.options.slot),
                plan.segment.start(size),
                Some(plan.segment.timeline),
            )
            .await?;
        tracing::info!(
            server = %client_addr,
            timeline = plan.segment.timeline,
            from = %plan.segment.start(size),
            durable = %plan.durable,
            "streaming WAL into the archive"
        );
        Ok((stream, Current::new(size, plan.segment, plan.stored)))
    }

    /// Reads the slot, creating it if missing.
    async fn ensure_slot(&self, client: &mut ReplicationClient) -> dr_core::Result<SlotPosition> {
        let name = &self.archiver.options.slot;
        if let Some(slot) = client.read_replication_slot(name).await? {
            return Ok(slot);
        }
        match client
            .create_physical_slot(name, &CreateSlotOptions::new().reserve_wal(true))
            .await
        {
            Ok(_) => {}
            // Created meanwhile by another archiver: use it.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        client.read_replication_slot(name).await?.ok_or_else(|| {
            Error::other(
                ErrorKind::Unavailable,
                format!("replication slot {name} vanished after it was created"),
                crate::Error::InvalidState {
                    reason: "slot dropped concurrently",
                },
            )
        })
    }

    /// Chooses where to stream from: the archive's end on its newest
    /// timeline, else the slot, else the server's position; then along the
    /// server's timeline history to the server's timeline.
    async fn plan(
        &self,
        client: &mut ReplicationClient,
        identity: &SystemIdentity,
        slot: &SlotPosition,
        listing: &ArchiveListing,
        size: WalSegmentSize,
    ) -> dr_core::Result<Plan> {
        let server_timeline = identity.timeline;
        let (mut timeline, mut durable, from_archive) = match listing.latest_timeline() {
            Some(timeline) => {
                let end = listing.end_of(timeline, size).unwrap_or(Lsn::ZERO);
                (timeline, end, true)
            }
            None => {
                let (timeline, at) = match slot.restart_lsn {
                    Some(lsn) => (slot.restart_timeline.unwrap_or(server_timeline), lsn),
                    None => (server_timeline, identity.xlogpos),
                };
                let start = WalSegment::containing(timeline, at, size).start(size);
                (timeline, start, false)
            }
        };
        if timeline > server_timeline {
            return Err(unavailable(
                client,
                format!(
                    "the server is on timeline {server_timeline}, behind the archive's timeline {timeline}"
                ),
            ));
        }
        if timeline < server_timeline {
            let history = client.timeline_history(server_timeline).await?;
            let path = TimelinePath::from_history(&history)?;
            let Some(switch) = path.switches.iter().find(|s| s.timeline == timeline) else {
                return Err(Error::invalid(
                    format!("PostgreSQL server {}", client.addr()),
                    format!(
                        "timeline {timeline} of the archive of {} is not in the history of the \
                         server's timeline {server_timeline}",
                        self.archiver.component
                    ),
                ));
            };
            if durable >= switch.switch_point {
                // The archive has all of the old timeline the server knows:
                // go on with the timeline that follows it.
                timeline = path.timeline_at(switch.switch_point);
                durable = switch.switch_point;
                let segment = WalSegment::containing(timeline, durable, size);
                let stored = match listing.segments.get(&segment) {
                    Some(crate::archive::Coverage::Partial { end }) => *end,
                    _ => 0,
                };
                return Ok(Plan {
                    segment,
                    stored,
                    durable,
                });
            }
        } else if from_archive && durable > identity.xlogpos {
            return Err(unavailable(
                client,
                format!(
                    "the server's WAL ends at {}, before the archive's end {durable} on timeline {timeline}",
                    identity.xlogpos
                ),
            ));
        }
        let segment = WalSegment::containing(timeline, durable, size);
        let stored = if from_archive {
            (durable.as_u64() - segment.start(size).as_u64()) as u32
        } else {
            0
        };
        Ok(Plan {
            segment,
            stored,
            durable,
        })
    }

    /// Stores the history files of the timelines up to `timeline` that the
    /// archive lacks and the server has (it needs only those on its path).
    pub(super) async fn ensure_histories(
        &mut self,
        client: &mut ReplicationClient,
        timeline: u32,
    ) -> dr_core::Result<()> {
        for tli in 2..=timeline {
            if self.histories.contains(&tli) {
                continue;
            }
            let history = match client.timeline_history(tli).await {
                Ok(history) => history,
                // Timelines off the server's path need not be there.
                Err(e) if tli < timeline && e.server_error().is_some_and(|s| !s.is_fatal()) => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // A history file's name does not depend on the segment size.
            let name = ArchivedWal::History(tli).name(crate::wal::DEFAULT_SEGMENT_SIZE);
            self.archiver
                .sink
                .put_segment(&self.archiver.component, &name, &mut &history.content[..])
                .await?;
            self.histories.insert(tli);
            self.status.histories_stored += 1;
        }
        Ok(())
    }
}
