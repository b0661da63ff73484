//! Set-up shared by the tests: servers, a repository, a populated state.

use std::sync::Arc;

use dr_livekit::proto;
use dr_livekit::{DesiredRooms, LiveKit};
use dr_livekit_testkit::LiveKitServer;
use dr_storage::{InitOptions, MemoryBackend, Repository};

/// A LiveKit client of `server`.
pub(crate) fn client(server: &LiveKitServer) -> LiveKit {
    LiveKit::new(&server.url(), server.api_key(), server.api_secret()).unwrap()
}

/// A repository in memory, unencrypted.
pub(crate) async fn repository() -> Arc<Repository> {
    Arc::new(
        Repository::init(Arc::new(MemoryBackend::new()), InitOptions::unencrypted())
            .await
            .unwrap(),
    )
}

/// A participant as a client joins with it.
pub(crate) fn participant(identity: &str, metadata: &str) -> proto::ParticipantInfo {
    proto::ParticipantInfo {
        identity: identity.into(),
        name: identity.to_uppercase(),
        metadata: metadata.into(),
        attributes: [("team".to_owned(), "blue".to_owned())].into(),
        permission: Some(proto::ParticipantPermission {
            can_publish: true,
            can_subscribe: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The GoMeet-like state the round trips use: two rooms (one made through
/// the registry with an agent and a playout delay), participants, a
/// running room-composite egress, an agent dispatch, an RTMP ingress, an
/// inbound and an outbound SIP trunk and a dispatch rule naming the
/// inbound one. The registry it was made through.
pub(crate) async fn populate(server: &LiveKitServer, livekit: &LiveKit) -> DesiredRooms {
    let api = server.api();
    let desired = DesiredRooms::new();
    desired
        .create_room(
            livekit,
            proto::CreateRoomRequest {
                name: "standup".into(),
                empty_timeout: 600,
                max_participants: 20,
                metadata: "{\"topic\":\"daily\"}".into(),
                min_playout_delay: 100,
                max_playout_delay: 400,
                agents: vec![proto::RoomAgentDispatch {
                    agent_name: "notes".into(),
                    metadata: "minutes".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    api.room()
        .create_room(
            "all-hands",
            livekit_api::services::room::CreateRoomOptions {
                departure_timeout: 30,
                metadata: "quarterly".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    server
        .join("standup", participant("alice", "host"))
        .unwrap();
    server.join("standup", participant("bob", "")).unwrap();
    server
        .join("all-hands", participant("carol", "speaker"))
        .unwrap();
    api.egress()
        .start_room_composite_egress(
            "all-hands",
            vec![livekit_api::services::egress::EgressOutput::Stream(
                proto::StreamOutput {
                    protocol: proto::StreamProtocol::Rtmp as i32,
                    urls: vec!["rtmp://youtube.example/live/key".into()],
                },
            )],
            livekit_api::services::egress::RoomCompositeOptions {
                layout: "speaker".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    api.agent_dispatch()
        .create_dispatch(proto::CreateAgentDispatchRequest {
            agent_name: "translator".into(),
            room: "all-hands".into(),
            metadata: "fr".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    api.ingress()
        .create_ingress(
            proto::IngressInput::RtmpInput,
            livekit_api::services::ingress::CreateIngressOptions {
                name: "studio".into(),
                room_name: "all-hands".into(),
                participant_identity: "studio-feed".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let inbound = api
        .sip()
        .create_sip_inbound_trunk(
            "pstn-in".into(),
            vec!["+15550100".into()],
            Default::default(),
        )
        .await
        .unwrap();
    api.sip()
        .create_sip_outbound_trunk(
            "pstn-out".into(),
            "sip.example.com".into(),
            vec!["+15550101".into()],
            Default::default(),
        )
        .await
        .unwrap();
    api.sip()
        .create_sip_dispatch_rule(
            proto::sip_dispatch_rule::Rule::DispatchRuleDirect(proto::SipDispatchRuleDirect {
                room_name: "all-hands".into(),
                pin: String::new(),
            }),
            livekit_api::services::sip::CreateSIPDispatchRuleOptions {
                name: "to-all-hands".into(),
                trunk_ids: vec![inbound.sip_trunk_id],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    desired
}

/// [`populate`]s `server`, snapshots it as `livekit/sfu` into a new
/// repository in memory: a client of it, and the repository.
pub(crate) async fn populated_snapshot(server: &LiveKitServer) -> (LiveKit, Arc<Repository>) {
    use dr_core::BackupExt;
    let livekit = client(server);
    let desired = populate(server, &livekit).await;
    let repo = repository().await;
    dr_livekit::LiveKitSnapshot::new("livekit/sfu".parse().unwrap(), livekit.clone())
        .desired_rooms(desired)
        .backup_to(repo.as_ref())
        .await
        .unwrap();
    (livekit, repo)
}

/// A repository in a directory of its own, unencrypted.
pub(crate) async fn repository_in(dir: &std::path::Path) -> Arc<Repository> {
    let backend = Arc::new(dr_storage::FsBackend::new(dir).unwrap());
    Arc::new(
        Repository::init(backend, InitOptions::unencrypted())
            .await
            .unwrap(),
    )
}

/// The bytes of every file under `dir`.
pub(crate) fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// The server a test that needs no stand-in-only control runs against: a
/// real LiveKit when `DRKIT_TEST_LIVEKIT_URL`, `DRKIT_TEST_LIVEKIT_KEY` and
/// `DRKIT_TEST_LIVEKIT_SECRET` name one, else the stand-in.
pub(crate) enum Sfu {
    StandIn(LiveKitServer),
    Real {
        url: String,
        key: String,
        secret: String,
    },
}

impl Sfu {
    pub(crate) async fn start() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (
            var("DRKIT_TEST_LIVEKIT_URL"),
            var("DRKIT_TEST_LIVEKIT_KEY"),
            var("DRKIT_TEST_LIVEKIT_SECRET"),
        ) {
            (Some(url), Some(key), Some(secret)) => Sfu::Real { url, key, secret },
            (None, _, _) => Sfu::StandIn(LiveKitServer::start().await.unwrap()),
            _ => panic!(
                "DRKIT_TEST_LIVEKIT_URL needs DRKIT_TEST_LIVEKIT_KEY and DRKIT_TEST_LIVEKIT_SECRET"
            ),
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Sfu::StandIn(server) => server.url(),
            Sfu::Real { url, .. } => url.clone(),
        }
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            Sfu::StandIn(server) => server.api_key(),
            Sfu::Real { key, .. } => key,
        }
    }

    pub(crate) fn secret(&self) -> &str {
        match self {
            Sfu::StandIn(server) => server.api_secret(),
            Sfu::Real { secret, .. } => secret,
        }
    }

    pub(crate) fn client(&self) -> LiveKit {
        LiveKit::new(&self.url(), self.key(), self.secret()).unwrap()
    }

    pub(crate) fn api(&self) -> livekit_api::services::LiveKitApi {
        livekit_api::services::LiveKitApi::with_api_key(&self.url(), self.key(), self.secret())
    }
}

/// Room names of one test run: on a real server shared by others, each
/// test touches only its own rooms.
pub(crate) fn run_prefix() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).unwrap();
    format!("drkit-test-{:08x}-", u32::from_le_bytes(bytes))
}
