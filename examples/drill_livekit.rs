//! The drill's LiveKit scenario, GoMeet's headline component (RTO 5
//! minutes, RPO 1 minute), on two stand-in SFUs (no livekit-server installs
//! here) sharing one API key as a warm standby does:
//!
//! 1. the SFU with GoMeet's rooms (made through a `DesiredRooms` registry:
//!    an agent, a playout delay), participants, a recording egress, a studio
//!    ingress, a SIP trunk and its dispatch rule;
//! 2. the snapshot schedule (every minute in the plan, every second here):
//!    the first stores the state, the next ones only confirm it unchanged;
//! 3. a room's metadata changed after the last snapshot: what the
//!    failover cannot bring back;
//! 4. the SFU's region is lost; `LiveKitFailover` finds it dead, restores
//!    the latest snapshot onto the standby and points clients there; the
//!    participants rejoin and get their metadata and permissions back; the
//!    ingress's new stream key is what the studio must be told.
//!
//! The RTO runs from the loss to the standby serving the rooms; the RPO is
//! the snapshot's age at the loss.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dr_core::{
    Backup, BackupBase, BackupRequest, ComponentId, FailoverHooks, FailoverMode, FailoverRequest,
    LossLimit, Member, Objectives, Rewire, async_trait,
};
use dr_livekit::{
    DesiredRooms, ItemKind, LiveKit, LiveKitFailover, LiveKitSnapshot, LiveKitSnapshotDetails,
    proto,
};
use dr_livekit_testkit::LiveKitServer;
use dr_storage::Repository;
use jiff::Timestamp;

use crate::{Result, step};

/// Rooms of the drill, each with this many participants.
const ROOMS: usize = 40;
const PARTICIPANTS: usize = 5;

/// Records where clients were pointed: the drill's DNS.
#[derive(Default)]
struct Dns(Mutex<Option<String>>);

#[async_trait]
impl Rewire for Dns {
    async fn rewire(&self, _: &ComponentId, primary: &Member) -> dr_core::Result<()> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(primary.name.clone());
        Ok(())
    }
}

pub(crate) async fn run(repo: Arc<Repository>) -> Result<(bool, String)> {
    step("LiveKit: the SFU and a warm standby (stand-ins, one API key); GoMeet's rooms on the SFU");
    let sfu = LiveKitServer::start().await?;
    let standby = sfu.start_standby().await?;
    let primary = LiveKit::new(&sfu.url(), sfu.api_key(), sfu.api_secret())?;
    let dr = LiveKit::new(&standby.url(), standby.api_key(), standby.api_secret())?;
    let desired = DesiredRooms::new();
    populate(&sfu, &primary, &desired).await?;

    let component: ComponentId = "livekit/gomeet-sfu".parse()?;
    let objectives = Objectives::new("5 minutes".parse()?, "1 minute".parse()?);
    step("the snapshot schedule: every minute in the plan, every second here");
    let snapshot =
        LiveKitSnapshot::new(component.clone(), primary.clone()).desired_rooms(desired.clone());
    let mut taken = Vec::new();
    for _ in 0..3 {
        let report = snapshot
            .backup(BackupRequest::new(repo.as_ref()).base(BackupBase::LatestFull(repo.as_ref())))
            .await?;
        let details = LiveKitSnapshotDetails::of(&report.manifest)?
            .ok_or("a LiveKit snapshot without its details")?;
        println!(
            "  {}: {} rooms, {} participants; {}",
            report.manifest.id,
            details.counts.rooms,
            details.counts.participants,
            match details.unchanged_since {
                Some(full) => format!("unchanged since {full}: confirmed, no state stored"),
                None => format!("{} bytes of state stored", report.manifest.total_size()),
            }
        );
        taken.push(report.manifest);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let last = taken.last().ok_or("no snapshot")?.recovery_point.at;

    step("after the last snapshot: a room's metadata changes (the failover cannot bring it back)");
    let api = sfu.api();
    api.room()
        .update_room_metadata("room-00", "{\"topic\":\"changed after the snapshot\"}")
        .await?;

    step("the SFU's region is lost");
    let incident = Timestamp::now();
    drop(sfu);
    let failover = LiveKitFailover::new(
        component.clone(),
        primary,
        dr.clone(),
        repo.clone(),
        objectives,
    );
    let dns = Dns::default();
    let request = FailoverRequest::new(
        FailoverMode::Failover,
        objectives,
        LossLimit::Within(objectives.rpo),
    )
    .incident_at(incident);
    let outcome = dr_core::execute(
        &failover,
        &request,
        FailoverHooks {
            rewire: Some(&dns),
            ..Default::default()
        },
    )
    .await?;
    let restored = failover
        .last_restore()
        .ok_or("the failover restored nothing")?;

    step("participants rejoin the standby; each gets its metadata and permissions back");
    let mut reapplied = 0;
    for room in 0..ROOMS {
        for person in 0..PARTICIPANTS {
            let (room, identity) = (format!("room-{room:02}"), format!("user-{room}-{person}"));
            standby.join(
                &room,
                proto::ParticipantInfo {
                    identity: identity.clone(),
                    ..Default::default()
                },
            )?;
            if restored
                .rejoin
                .participant_joined(&room, &identity)
                .await?
                .is_some()
            {
                reapplied += 1;
            }
        }
    }

    // Every room as the snapshot had it, on the standby.
    let rooms = standby.api().room().list_rooms(Vec::new()).await?;
    // room-00's change after the snapshot is lost: it has the snapshot's.
    let metadata_kept = rooms.iter().all(|r| r.metadata == "{\"topic\":\"daily\"}");
    let pointed = dns.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let stream_key = restored
        .applied
        .remap
        .of_kind(ItemKind::Ingress)
        .next()
        .and_then(|r| r.new_stream_key.clone())
        .unwrap_or_default();
    let failed = restored.applied.failed().count();
    let report = &outcome.report;
    let rto = report.achieved_rto().as_duration();
    let lost = report.data_loss.map(|l| l.as_duration());
    let rpo_at_loss = Duration::try_from(incident.duration_since(last)).unwrap_or_default();
    let met = report.objectives_met()
        && failed == 0
        && rooms.len() == ROOMS
        && metadata_kept
        && reapplied == ROOMS * PARTICIPANTS
        && pointed.as_deref() == Some(standby.url().as_str());
    let steps: Vec<String> = report
        .timeline
        .steps()
        .iter()
        .map(|s| format!("    {:>6.2} s  {}", s.duration().as_secs_f64(), s.name))
        .collect();
    Ok((
        met,
        format!(
            "\nLiveKit, the SFU's region lost: {} rooms and their settings on the standby, {} of {} \
             participants set again as they rejoined, clients pointed at {}; the studio's new stream \
             key {stream_key}\n  RTO {:.1} s (objective 5 minutes), RPO {} (objective 1 minute; the \
             snapshot was {:.1} s old at the loss; room-00's later metadata lost as expected): {}\n{}",
            rooms.len(),
            reapplied,
            ROOMS * PARTICIPANTS,
            pointed.unwrap_or_else(|| "nowhere".into()),
            rto.as_secs_f64(),
            lost.map_or("not measured".to_owned(), |l| format!(
                "{:.1} s",
                l.as_secs_f64()
            )),
            rpo_at_loss.as_secs_f64(),
            if met { "MET" } else { "MISSED" },
            steps.join("\n")
        ),
    ))
}

/// GoMeet's rooms, participants, a recording, a studio ingress and a SIP
/// trunk with its dispatch rule.
async fn populate(sfu: &LiveKitServer, primary: &LiveKit, desired: &DesiredRooms) -> Result<()> {
    for room in 0..ROOMS {
        let name = format!("room-{room:02}");
        desired
            .create_room(
                primary,
                proto::CreateRoomRequest {
                    name: name.clone(),
                    empty_timeout: 600,
                    max_participants: 50,
                    metadata: "{\"topic\":\"daily\"}".into(),
                    max_playout_delay: 400,
                    agents: vec![proto::RoomAgentDispatch {
                        agent_name: "notes".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .await?;
        for person in 0..PARTICIPANTS {
            sfu.join(
                &name,
                proto::ParticipantInfo {
                    identity: format!("user-{room}-{person}"),
                    name: format!("User {room}.{person}"),
                    metadata: format!("{{\"seat\":{person}}}"),
                    permission: Some(proto::ParticipantPermission {
                        can_publish: person == 0,
                        can_subscribe: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )?;
        }
    }
    let api = sfu.api();
    api.egress()
        .start_room_composite_egress(
            "room-00",
            vec![livekit_api::services::egress::EgressOutput::Stream(
                proto::StreamOutput {
                    protocol: proto::StreamProtocol::Rtmp as i32,
                    urls: vec!["rtmp://recordings.gomeet.example/live/room-00".into()],
                },
            )],
            livekit_api::services::egress::RoomCompositeOptions {
                layout: "speaker".into(),
                ..Default::default()
            },
        )
        .await?;
    api.ingress()
        .create_ingress(
            proto::IngressInput::RtmpInput,
            livekit_api::services::ingress::CreateIngressOptions {
                name: "studio".into(),
                room_name: "room-01".into(),
                participant_identity: "studio".into(),
                ..Default::default()
            },
        )
        .await?;
    let trunk = api
        .sip()
        .create_sip_inbound_trunk("pstn".into(), vec!["+15550100".into()], Default::default())
        .await?;
    api.sip()
        .create_sip_dispatch_rule(
            proto::sip_dispatch_rule::Rule::DispatchRuleDirect(proto::SipDispatchRuleDirect {
                room_name: "room-02".into(),
                pin: String::new(),
            }),
            livekit_api::services::sip::CreateSIPDispatchRuleOptions {
                name: "dial-in".into(),
                trunk_ids: vec![trunk.sip_trunk_id],
                ..Default::default()
            },
        )
        .await?;
    println!(
        "  {ROOMS} rooms of {PARTICIPANTS} participants, a recording, a studio ingress, a SIP trunk and its rule"
    );
    Ok(())
}
