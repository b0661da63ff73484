//! `livekit` components: a snapshot, a second that only confirms the
//! unchanged state, verify, and restores onto the server after a restart
//! and onto its standby, with the remap saved; bad settings refused.

use std::time::Duration;

use dr_livekit_testkit::LiveKitServer;
use livekit_protocol as proto;

use crate::common::{Setup, text};

const COMPONENT: &str = "livekit/sfu";

/// A config whose component backs up `primary` (secret from a file) with
/// `standby` as its standby, and its repository created.
async fn setup(primary: &LiveKitServer, standby: &LiveKitServer) -> Setup {
    setup_with(primary, standby, "").await
}

/// As [`setup`], with more lines of `[component.livekit]`.
async fn setup_with(primary: &LiveKitServer, standby: &LiveKitServer, more: &str) -> Setup {
    let more = format!("standby_url = \"{}\"\n{more}", standby.url());
    let setup = Setup::with_components(|dir| livekit_component(dir, primary, &more));
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    setup
}

/// The `livekit` component of `sfu` (its secret in a file in `dir`), with
/// `more` lines of `[component.livekit]`.
fn livekit_component(dir: &std::path::Path, sfu: &LiveKitServer, more: &str) -> String {
    let secret = dir.join("livekit.secret");
    std::fs::write(&secret, format!("{}\n", sfu.api_secret())).unwrap();
    format!(
        "[[component]]\nid = \"{COMPONENT}\"\nkind = \"livekit\"\n\
         objectives = {{ rto = \"5m\", rpo = \"1m\" }}\nretention = \"last=10\"\n\n\
         [component.livekit]\nurl = \"{url}\"\napi_key = \"{key}\"\n\
         api_secret = {{ file = \"{secret}\" }}\n{more}\n",
        url = sfu.url(),
        key = sfu.api_key(),
        secret = secret.display(),
    )
}

/// Rooms with participants, an egress and an ingress on `server`.
async fn populate(server: &LiveKitServer) {
    let api = server.api();
    for (room, metadata) in [("standup", "daily"), ("all-hands", "quarterly")] {
        api.room()
            .create_room(
                room,
                livekit_api::services::room::CreateRoomOptions {
                    metadata: metadata.into(),
                    max_participants: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    for identity in ["alice", "bob"] {
        server
            .join(
                "standup",
                proto::ParticipantInfo {
                    identity: identity.into(),
                    metadata: format!("{identity}-meta"),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    api.ingress()
        .create_ingress(
            proto::IngressInput::RtmpInput,
            livekit_api::services::ingress::CreateIngressOptions {
                name: "studio".into(),
                room_name: "all-hands".into(),
                participant_identity: "studio".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_livekit_component_is_snapshotted_confirmed_verified_and_restored() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = primary.start_standby().await.unwrap();
    populate(&primary).await;
    let setup = setup(&primary, &standby).await;

    let first = setup.drkit(&["backup", COMPONENT]).await;
    assert!(first.status.success(), "{}", text(&first));
    let printed = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(printed.contains("2 rooms, 2 participants"), "{printed}");

    let second = setup.drkit(&["backup", COMPONENT]).await;
    assert!(second.status.success(), "{}", text(&second));
    let printed = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(printed.contains("unchanged since"), "{printed}");

    let verify = setup.drkit(&["verify", "--component", COMPONENT]).await;
    assert!(verify.status.success(), "{}", text(&verify));

    // The SFU restarts: its rooms are gone, its ingress stays.
    primary.restart();
    let restore = setup.drkit(&["restore", COMPONENT]).await;
    assert!(restore.status.success(), "{}", text(&restore));
    assert_eq!(primary.counts().0, 2);
    let printed = String::from_utf8_lossy(&restore.stdout).to_string();
    assert!(printed.contains("2 participants to set again"), "{printed}");

    // The region is gone: the standby gets everything, the ingress anew.
    let remap = setup.dir.path().join("remap.json");
    let onto_standby = setup
        .drkit(&[
            "restore",
            COMPONENT,
            "--standby",
            "--remap",
            remap.to_str().unwrap(),
        ])
        .await;
    assert!(onto_standby.status.success(), "{}", text(&onto_standby));
    assert_eq!(standby.counts().0, 2);
    let remap: serde_json::Value = serde_json::from_slice(&std::fs::read(&remap).unwrap()).unwrap();
    let ingress: Vec<&serde_json::Value> = remap["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ingress")
        .collect();
    assert_eq!(ingress.len(), 1, "{remap}");
    assert_ne!(ingress[0]["old_stream_key"], ingress[0]["new_stream_key"]);

    // A flag of another kind is refused.
    let wrong = setup.drkit(&["restore", COMPONENT, "--single-pass"]).await;
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
}

#[tokio::test]
async fn status_says_whether_the_sfu_and_its_standby_serve() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = primary.start_standby().await.unwrap();
    let setup = setup(&primary, &standby).await;
    let backup = setup.drkit(&["backup", COMPONENT]).await;
    assert!(backup.status.success(), "{}", text(&backup));
    standby.set_down(true);

    let status = setup.drkit(&["status"]).await;
    assert!(status.status.success(), "{}", text(&status));
    let printed = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        printed.contains(&format!(
            "server        {} serves (ListRooms in",
            primary.url()
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "standby       {} does NOT serve: GET / answered 406",
            standby.url()
        )),
        "{printed}"
    );

    // The same as JSON; an unreadable secret is said, not fatal.
    std::fs::remove_file(setup.dir.path().join("livekit.secret")).unwrap();
    standby.set_down(false);
    let json = setup.drkit(&["--json", "status"]).await;
    assert!(json.status.success(), "{}", text(&json));
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let servers = rows[0]["livekit"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{rows}");
    assert_eq!(servers[0]["role"], "server");
    assert_eq!(servers[0]["serves"], false);
    assert!(
        servers[0]["problem"]
            .as_str()
            .unwrap()
            .contains("livekit.secret"),
        "{rows}"
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_the_backup_and_names_the_server() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = LiveKitServer::start().await.unwrap();
    let setup = setup(&primary, &standby).await;
    std::fs::write(setup.dir.path().join("livekit.secret"), "wrong\n").unwrap();
    let backup = setup.drkit(&["backup", COMPONENT]).await;
    assert!(!backup.status.success(), "{}", text(&backup));
    let err = String::from_utf8_lossy(&backup.stderr).to_string();
    assert!(err.contains(&primary.url()), "{err}");
    assert!(err.contains("refused the API key or secret"), "{err}");
}

#[tokio::test]
async fn a_dead_sfu_is_failed_over_to_its_standby_and_clients_pointed_there() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = primary.start_standby().await.unwrap();
    populate(&primary).await;
    let pointed = tempfile::NamedTempFile::new().unwrap();
    let rewire = format!(
        "rewire_command = [\"sh\", \"-c\", \"echo {{url}} > {}\"]",
        pointed.path().display()
    );
    let setup = setup_with(&primary, &standby, &rewire).await;
    let backup = setup.drkit(&["backup", COMPONENT]).await;
    assert!(backup.status.success(), "{}", text(&backup));

    drop(primary);
    let plan = setup.drkit(&["failover", COMPONENT, "--dry-run"]).await;
    assert!(plan.status.success(), "{}", text(&plan));
    let printed = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        printed.contains(&format!("promote  {}", standby.url())),
        "{printed}"
    );
    assert_eq!(standby.counts().0, 0, "a dry run changes nothing");

    let failover = setup.drkit(&["failover", COMPONENT]).await;
    assert!(failover.status.success(), "{}", text(&failover));
    assert_eq!(standby.counts().0, 2);
    assert_eq!(
        std::fs::read_to_string(pointed.path()).unwrap().trim(),
        standby.url()
    );
    let printed = String::from_utf8_lossy(&failover.stdout).to_string();
    assert!(printed.contains("remapped Ingress"), "{printed}");
}

/// LiveKit's Redis, seeded as a multi-node LiveKit writes it
/// (`redisstore.go`, `redisstore_sip.go`): protobuf values in hashes, the
/// durable keys and the ephemeral ones.
async fn seed_livekit_schema(con: &mut redis::aio::MultiplexedConnection) {
    use prost::Message;
    let ingress = proto::IngressInfo {
        ingress_id: "IN_k3Yx8TzVbQ2a".into(),
        name: "studio".into(),
        stream_key: "Hq7mT2pXw9Ld".into(),
        url: "rtmp://ingress.example/x".into(),
        room_name: "all-hands".into(),
        participant_identity: "studio".into(),
        ..Default::default()
    };
    let state = proto::IngressState {
        status: proto::ingress_state::Status::EndpointBuffering as i32,
        ..Default::default()
    };
    let trunk = proto::SipInboundTrunkInfo {
        sip_trunk_id: "ST_pQ4rS5tU6vW7".into(),
        name: "pstn-in".into(),
        numbers: vec!["+15550100".into()],
        ..Default::default()
    };
    let rule = proto::SipDispatchRuleInfo {
        sip_dispatch_rule_id: "SDR_x1Y2z3A4b5C6".into(),
        trunk_ids: vec![trunk.sip_trunk_id.clone()],
        name: "to-all-hands".into(),
        ..Default::default()
    };
    let dispatch = proto::AgentDispatch {
        id: "AD_m8N9o0P1q2R3".into(),
        agent_name: "translator".into(),
        room: "all-hands".into(),
        ..Default::default()
    };
    let room = proto::Room {
        sid: "RM_a1B2c3D4e5F6".into(),
        name: "all-hands".into(),
        ..Default::default()
    };
    let participant = proto::ParticipantInfo {
        sid: "PA_g7H8i9J0k1L2".into(),
        identity: "alice".into(),
        ..Default::default()
    };
    let _: () = redis::pipe()
        .hset("ingress", &ingress.ingress_id, ingress.encode_to_vec())
        .hset(
            "{ingress}_stream_key",
            &ingress.stream_key,
            &ingress.ingress_id,
        )
        .set(
            format!("{{ingress}}_state:{}", ingress.ingress_id),
            state.encode_to_vec(),
        )
        .sadd("room_{ingress}:all-hands", &ingress.ingress_id)
        .hset(
            "sip_inbound_trunk",
            &trunk.sip_trunk_id,
            trunk.encode_to_vec(),
        )
        .hset(
            "sip_dispatch_rule",
            &rule.sip_dispatch_rule_id,
            rule.encode_to_vec(),
        )
        .hset(
            "agent_dispatch:all-hands",
            &dispatch.id,
            dispatch.encode_to_vec(),
        )
        .hset("rooms", &room.name, room.encode_to_vec())
        .hset(
            "room_participants:all-hands",
            &participant.identity,
            participant.encode_to_vec(),
        )
        .set("livekit_version", "1.9.0")
        .query_async(con)
        .await
        .unwrap();
}

/// Every key and its value as `DUMP` gives it, `pattern` matching.
async fn dumps(
    con: &mut redis::aio::MultiplexedConnection,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(con).await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(con).await.unwrap();
        out.insert(key, dump);
    }
    out
}

#[tokio::test]
async fn livekit_s_durable_redis_keys_come_back_byte_exact_and_rooms_do_not() {
    let redis = dr_testkit::Redis::start().await.unwrap();
    let mut con = redis.connection().await.unwrap();
    seed_livekit_schema(&mut con).await;
    let before = dumps(&mut con).await;
    let sfu = LiveKitServer::start().await.unwrap();
    let setup = Setup::with_components(|dir| {
        format!(
            "[[component]]\nid = \"redis/livekit\"\nkind = \"redis\"\n\
             objectives = {{ rto = \"5m\", rpo = \"1m\" }}\nretention = \"last=3\"\n\n\
             [component.redis]\naddress = \"127.0.0.1:{port}\"\ntls = {{ mode = \"disable\" }}\n\n{livekit}",
            port = redis.port(),
            livekit = livekit_component(dir, &sfu, "redis_component = \"redis/livekit\""),
        )
    });
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let backup = setup.drkit(&["backup", "redis/livekit"]).await;
    assert!(backup.status.success(), "{}", text(&backup));

    // LiveKit's Redis is lost; the nodes came back and made a room anew.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg("rooms")
        .arg("standup")
        .arg("new")
        .query_async(&mut con)
        .await
        .unwrap();

    let restore = setup.drkit(&["restore", COMPONENT, "--redis-keys"]).await;
    assert!(restore.status.success(), "{}", text(&restore));
    let printed = String::from_utf8_lossy(&restore.stdout).to_string();
    assert!(printed.contains("method: redis keys"), "{printed}");
    assert!(
        printed.contains("7 keys written, 3 other keys left out"),
        "{printed}"
    );

    let after = dumps(&mut con).await;
    for key in [
        "ingress",
        "{ingress}_stream_key",
        "{ingress}_state:IN_k3Yx8TzVbQ2a",
        "room_{ingress}:all-hands",
        "sip_inbound_trunk",
        "sip_dispatch_rule",
        "agent_dispatch:all-hands",
    ] {
        assert_eq!(after.get(key), before.get(key), "{key}");
    }
    // The rooms and participants of the lost store are not brought back:
    // the room made since stays as it is.
    assert!(!after.contains_key("room_participants:all-hands"));
    assert!(!after.contains_key("livekit_version"));
    let rooms: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("rooms")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms["standup"], "new");

    // Without a redis_component the flag is refused, naming what to add.
    let refused = setup
        .drkit(&["restore", "redis/livekit", "--redis-keys"])
        .await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
}

/// The node-failure runbook: an SFU Deployment whose pods crash-loop (the
/// test API server's `drkit.test/fail`), their replacements healthy (the
/// ReplicaSet's template no longer failing, as on another node), the
/// participants back in LiveKit's metrics.
#[tokio::test]
async fn the_node_failure_runbook_replaces_failed_sfu_pods_and_counts_participants_back() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::Api;
    use kube::api::{ListParams, Patch, PatchParams, PostParams};
    use serde_json::json;

    let kube_server = dr_k8s_testkit::KubeApiServer::start().await.unwrap();
    let sfu = LiveKitServer::start().await.unwrap();
    let standby = LiveKitServer::start().await.unwrap();
    let setup = setup(&sfu, &standby).await;
    let kubeconfig = kube_server.kubeconfig(setup.dir.path()).await.unwrap();
    let client = dr_k8s::Cluster::from_kubeconfig(&kubeconfig, Some("test"))
        .await
        .unwrap()
        .client()
        .clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "livekit" } })).unwrap(),
        )
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "livekit");
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "livekit" },
                "spec": {
                    "replicas": 2,
                    "selector": { "matchLabels": { "app": "livekit" } },
                    "template": {
                        "metadata": {
                            "labels": { "app": "livekit" },
                            "annotations": { "drkit.test/fail": "true" }
                        },
                        "spec": { "containers": [{ "name": "sfu", "image": "livekit/livekit-server:v1.9" }] }
                    }
                }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "livekit");
    let selector = ListParams::default().labels("app=livekit");
    dr_testkit::eventually(
        "two crash-looping SFU pods",
        Duration::from_secs(10),
        || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move { (pods.list(&selector).await.unwrap().items.len() == 2).then_some(()) }
        },
    )
    .await;
    // The node is gone; the pods' replacements land on a healthy one.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "livekit");
    for set in sets.list(&selector).await.unwrap() {
        let name = set.metadata.name.clone().unwrap();
        sets.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": { "template": { "metadata": { "annotations": { "drkit.test/fail": null } } } }
            })),
        )
        .await
        .unwrap();
    }
    // The participants reconnect as soon as the SFU serves again.
    for identity in ["alice", "bob", "carol"] {
        sfu.join(
            "standup",
            proto::ParticipantInfo {
                identity: identity.into(),
                ..Default::default()
            },
        )
        .unwrap();
    }

    let output = setup
        .drkit(&[
            "livekit",
            "node-failure",
            COMPONENT,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--context",
            "test",
            "-n",
            "livekit",
            "--metrics",
            &sfu.metrics_url(),
            "--expect-participants",
            "3",
            "--timeout",
            "30s",
        ])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(printed.contains("failed SFU pods: 2 of 2"), "{printed}");
    assert!(printed.contains("3 participants"), "{printed}");
    let ready = pods
        .list(&selector)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    assert_eq!(ready, 2);
}

/// The agent's schedule every second (every minute in the plan): each
/// backup after the first only confirms the unchanged state, and
/// `/metrics` holds the newest restorable point against the RPO.
#[tokio::test]
async fn the_agent_s_frequent_snapshots_keep_the_rpo_met_and_store_only_confirmations() {
    use crate::common::agent::{Agent, value};

    let sfu = LiveKitServer::start().await.unwrap();
    let standby = LiveKitServer::start().await.unwrap();
    populate(&sfu).await;
    let setup = setup(&sfu, &standby).await;
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("rpo = \"1m\"", "rpo = \"10s\"");
    std::fs::write(
        &setup.config,
        format!(
            "{config}\n[[component.schedule]]\njob = \"backup\"\ncron = \"* * * * * *\"\n\n\
             [agent]\nlisten = \"127.0.0.1:0\"\nprune = {{ cron = \"0 0 4 * * 0\" }}\n\
             retry = \"1s\"\nrefresh = \"1s\"\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&setup, "agent").await;
    let labels = [
        ("component", COMPONENT),
        ("job", "backup"),
        ("result", "success"),
    ];
    let scrape = dr_testkit::eventually(
        "three backups and the RPO met",
        Duration::from_secs(60),
        || async {
            let scrape = agent.scrape().await;
            let runs = value(&scrape, "drkit_job_runs_total", &labels).unwrap_or(0.0);
            let met = value(
                &scrape,
                "drkit_rpo_compliance",
                &[("component", COMPONENT), ("state", "met")],
            ) == Some(1.0);
            (runs >= 3.0 && met).then_some(scrape)
        },
    )
    .await;
    let exposure = value(
        &scrape,
        "drkit_rpo_exposure_seconds",
        &[("component", COMPONENT)],
    )
    .unwrap();
    assert!(exposure < 10.0, "{exposure}: {}", agent.log());
    assert!(
        value(
            &scrape,
            "drkit_backup_last_bytes",
            &[("component", COMPONENT)]
        )
        .unwrap()
            < 1024.0,
        "an unchanged state stores no stream"
    );
    assert!(agent.log().contains("backup committed"), "{}", agent.log());
}
