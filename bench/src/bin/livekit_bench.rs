//! `livekit_bench`: the drkit side of `scripts/bench livekit` (see BENCHMARKS.md).
//!
//! ```text
//! livekit_bench serve    --dir <dir> --rooms <n> --targets <n>
//! livekit_bench init     --repo <dir>
//! livekit_bench snapshot --url <url> --repo <dir>
//! livekit_bench restore  --url <url> --repo <dir>
//! livekit_bench tokens   --url <url> --out <file>
//! livekit_bench check    --source <url> --target <url>
//! ```
//!
//! Every command but `serve` and `init` takes the API key and secret from
//! `LIVEKIT_API_KEY` and `LIVEKIT_API_SECRET`, as LiveKit's own tools do.
//!
//! - `serve` starts dr-livekit-testkit's LiveKit stand-in (the source) and
//!   `--targets` empty ones (each restore goes onto one of its own), all
//!   with one API key and secret, as a standby given the primary's keys. It
//!   fills the source through the API: `--rooms` rooms with metadata and
//!   timeouts (`CreateRoom`; each gets LiveKit's dispatch of the unnamed
//!   agent), 5 participants in each (name, metadata, attributes,
//!   permission; joined through the stand-in's test control, as no client
//!   can join over WebRTC here), a room-composite egress in one room in 100,
//!   an agent dispatch in one room in 10, 10 ingress (RTMP, WHIP, URL), 4
//!   inbound and 4 outbound SIP trunks and 8 dispatch rules naming them.
//!   It writes `<dir>/servers.env` (`LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`,
//!   `LK_SOURCE`, `LK_SOURCE_METRICS`, `LK_TARGETS` and `LK_TARGET_METRICS`,
//!   space-separated), prints `ready`, and serves until killed.
//! - `init` creates the (encrypted) repository, and takes nothing.
//! - `snapshot` takes a [`LiveKitSnapshot`] of the server into the
//!   repository, on the latest full snapshot as its base (a state found
//!   unchanged stores only a confirmation), and prints the state's counts.
//! - `restore` restores the repository's latest snapshot onto the server
//!   with a [`LiveKitRestore`] and fails if anything was not given back.
//! - `tokens` writes what the curl script needs and cannot make itself: a
//!   first line of one token with `roomList`, `roomCreate`, `roomRecord`,
//!   `ingressAdmin` and `sip.admin`, then `<room> <token>` with `roomAdmin`
//!   for each room of the server (ListParticipants, ListDispatch and
//!   CreateDispatch want one for their room); valid for a day.
//! - `check` reads both servers' state and fails unless the target holds
//!   what the source does that can be given back: the same rooms with the
//!   same metadata and settings, agent dispatches (agent, metadata,
//!   attributes), running egress (the same request), ingress (all but the
//!   id, stream key and state), SIP trunks and dispatch rules (all but the
//!   ids; rules name their trunks by name). Participants are counted, not
//!   compared: no API makes them, they rejoin.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use dr_core::{Backup, BackupBase, BackupRequest, Objectives, RecoveryTarget, RestoreRequest};
use dr_livekit::proto;
use dr_livekit::{
    ItemKind, LiveKit, LiveKitRestore, LiveKitSnapshot, LiveKitSnapshotDetails, LiveKitState,
    Outcome,
};
use dr_livekit_testkit::{LiveKitServer, LiveKitServerOptions};
use dr_storage::InitOptions;
use drkit_bench::{AnyResult, RepoArgs, secs};
use futures_util::{StreamExt, TryStreamExt, stream};
use livekit_api::access_token::{AccessToken, SIPGrants, VideoGrants};
use livekit_api::services::LiveKitApi;
use livekit_api::services::egress::{EgressOutput, RoomCompositeOptions};
use livekit_api::services::ingress::CreateIngressOptions;
use livekit_api::services::room::CreateRoomOptions;
use livekit_api::services::sip::{
    CreateSIPDispatchRuleOptions, CreateSIPInboundTrunkOptions, CreateSIPOutboundTrunkOptions,
};
use serde_json::{Value, json};

/// The benchmark's component in the repository.
const COMPONENT: &str = "livekit/bench";
/// Participants in each room.
const PARTICIPANTS: usize = 5;
/// One room in this many has a running room-composite egress.
const EGRESS_EVERY: usize = 100;
/// One room in this many has an agent dispatch of its own (besides the
/// unnamed agent's, which every room gets when it is made).
const DISPATCH_EVERY: usize = 10;
/// Ingress, SIP trunks of each direction, SIP dispatch rules.
const INGRESS: usize = 10;
const TRUNKS: usize = 4;
const RULES: usize = 8;
/// How long the curl script's tokens are valid.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// drkit's side of `scripts/bench livekit`.
#[derive(Parser)]
#[command(name = "livekit_bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the filled source and empty targets until killed.
    Serve {
        /// Where servers.env is written.
        #[arg(long)]
        dir: PathBuf,
        /// Rooms in the source.
        #[arg(long)]
        rooms: usize,
        /// Empty servers to restore onto.
        #[arg(long)]
        targets: usize,
    },
    /// Creates the repository, if its directory is empty, and takes nothing.
    Init {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Takes a snapshot of the server into the repository.
    Snapshot {
        #[arg(long)]
        url: String,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Restores the repository's latest snapshot onto the server.
    Restore {
        #[arg(long)]
        url: String,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Writes the curl script's tokens.
    Tokens {
        #[arg(long)]
        url: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Checks that the target holds what the source does.
    Check {
        #[arg(long)]
        source: String,
        #[arg(long)]
        target: String,
    },
}

fn main() -> ExitCode {
    drkit_bench::main(|cli: Cli| {
        let runtime = drkit_bench::runtime()?;
        match cli.command {
            Command::Serve {
                dir,
                rooms,
                targets,
            } => runtime.block_on(serve(dir, rooms, targets)),
            Command::Init { repo } => runtime.block_on(async {
                repo.open_or_create(InitOptions::encrypted).await?;
                Ok(())
            }),
            Command::Snapshot { url, repo } => runtime.block_on(snapshot(&url, &repo)),
            Command::Restore { url, repo } => runtime.block_on(restore(&url, &repo)),
            Command::Tokens { url, out } => runtime.block_on(tokens(&url, out)),
            Command::Check { source, target } => runtime.block_on(check(&source, &target)),
        }
    })
}

/// The API key and secret, from LiveKit's own environment variables.
fn keys() -> AnyResult<(String, String)> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| format!("{name} is not set (servers.env sets it)"))
    };
    Ok((var("LIVEKIT_API_KEY")?, var("LIVEKIT_API_SECRET")?))
}

fn livekit(url: &str) -> AnyResult<LiveKit> {
    let (key, secret) = keys()?;
    Ok(LiveKit::new(url, &key, &secret)?)
}

// --- serve ---------------------------------------------------------------------------------

async fn serve(dir: PathBuf, rooms: usize, targets: usize) -> AnyResult<()> {
    let started = Instant::now();
    let key = "APIbench";
    let secret = format!("bench-secret-{:x}-padding-to-32-chars", rand_seed());
    let options = || LiveKitServerOptions::default().api_key(key, secret.as_str());
    let source = LiveKitServer::start_with(options()).await?;
    let mut standby = Vec::with_capacity(targets);
    for _ in 0..targets {
        standby.push(LiveKitServer::start_with(options()).await?);
    }
    fill(&source, rooms).await?;
    let (n_rooms, n_participants) = source.counts();
    eprintln!(
        "filled the source with {n_rooms} rooms and {n_participants} participants in {:.2} s",
        secs(started)
    );
    std::fs::create_dir_all(&dir)?;
    let join =
        |f: &dyn Fn(&LiveKitServer) -> String| standby.iter().map(f).collect::<Vec<_>>().join(" ");
    let env = format!(
        "LIVEKIT_API_KEY={key}\nLIVEKIT_API_SECRET={secret}\nLK_SOURCE={}\nLK_SOURCE_METRICS={}\n\
         LK_TARGETS=\"{}\"\nLK_TARGET_METRICS=\"{}\"\n",
        source.url(),
        source.metrics_url(),
        join(&|s| s.url()),
        join(&|s| s.metrics_url()),
    );
    std::fs::write(dir.join("servers.env"), env)?;
    println!("ready {}", source.url());
    std::future::pending::<()>().await;
    Ok(())
}

/// A seed for the secret: not for security, only so that two runs differ.
fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ u128::from(std::process::id())
}

fn room_name(i: usize) -> String {
    format!("room-{i:05}")
}

/// The participant `j` of room `i`, as a client joins with it.
fn participant(i: usize, j: usize) -> proto::ParticipantInfo {
    let host = j == 0;
    proto::ParticipantInfo {
        identity: format!("user-{i:05}-{j}"),
        name: format!("User {i} {j}"),
        metadata: format!(
            "{{\"avatar\":\"https://cdn.example.com/avatars/{i:05}-{j}.png\",\"lang\":\"{}\"}}",
            ["en", "de", "fr", "es"][j % 4]
        ),
        attributes: [
            (
                "role".to_owned(),
                if host { "host" } else { "guest" }.to_owned(),
            ),
            ("team".to_owned(), format!("team-{}", (i + j) % 7)),
        ]
        .into(),
        permission: Some(proto::ParticipantPermission {
            can_subscribe: true,
            can_publish: host || j % 2 == 1,
            can_publish_data: true,
            can_update_metadata: host,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Fills `server` through its API (and its test control for participants).
async fn fill(server: &LiveKitServer, rooms: usize) -> AnyResult<()> {
    let api = LiveKitApi::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let creating = (0..rooms).map(|i| {
        let api = &api;
        async move {
            api.room()
                .create_room(
                    &room_name(i),
                    CreateRoomOptions {
                        empty_timeout: 300 + 60 * (i % 10) as u32,
                        departure_timeout: 20 + 10 * (i % 3) as u32,
                        max_participants: if i % 4 == 0 { 0 } else { 50 },
                        metadata: format!(
                            "{{\"topic\":\"Meeting {i}\",\"owner\":\"user-{i:05}-0\",\"tier\":\"{}\",\"features\":[\"chat\",\"recording\"]}}",
                            ["free", "pro", "enterprise"][i % 3]
                        ),
                        ..Default::default()
                    },
                )
                .await
        }
    });
    stream::iter(creating)
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    for i in 0..rooms {
        for j in 0..PARTICIPANTS {
            server.join(&room_name(i), participant(i, j))?;
        }
    }
    let dispatching = (0..rooms).step_by(DISPATCH_EVERY).map(|i| {
        let api = &api;
        async move {
            api.agent_dispatch()
                .create_dispatch(proto::CreateAgentDispatchRequest {
                    agent_name: "transcriber".into(),
                    room: room_name(i),
                    metadata: format!("{{\"language\":\"en\",\"room\":{i}}}"),
                    ..Default::default()
                })
                .await
        }
    });
    stream::iter(dispatching)
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    for i in (0..rooms).step_by(EGRESS_EVERY) {
        api.egress()
            .start_room_composite_egress(
                &room_name(i),
                vec![EgressOutput::File(proto::EncodedFileOutput {
                    file_type: proto::EncodedFileType::Mp4 as i32,
                    filepath: format!("recordings/{}/{{time}}.mp4", room_name(i)),
                    ..Default::default()
                })],
                RoomCompositeOptions {
                    layout: "grid".into(),
                    ..Default::default()
                },
            )
            .await?;
    }
    for k in 0..INGRESS {
        let input = match k % 3 {
            0 => proto::IngressInput::RtmpInput,
            1 => proto::IngressInput::WhipInput,
            _ => proto::IngressInput::UrlInput,
        };
        api.ingress()
            .create_ingress(
                input,
                CreateIngressOptions {
                    name: format!("ingress-{k}"),
                    room_name: room_name(k * 7 % rooms.max(1)),
                    participant_identity: format!("feed-{k}"),
                    participant_name: format!("Feed {k}"),
                    url: if input == proto::IngressInput::UrlInput {
                        format!("https://media.example.com/stream-{k}.m3u8")
                    } else {
                        String::new()
                    },
                    ..Default::default()
                },
            )
            .await?;
    }
    let mut trunk_ids = Vec::new();
    for k in 0..TRUNKS {
        let inbound = api
            .sip()
            .create_sip_inbound_trunk(
                format!("inbound-{k}"),
                vec![format!("+1555010{k}")],
                CreateSIPInboundTrunkOptions {
                    metadata: Some(format!("{{\"carrier\":\"carrier-{k}\"}}")),
                    allowed_addresses: Some(vec![format!("203.0.113.{k}/32")]),
                    auth_username: Some(format!("in-{k}")),
                    auth_password: Some(format!("secret-in-{k}")),
                    ..Default::default()
                },
            )
            .await?;
        trunk_ids.push(inbound.sip_trunk_id);
        api.sip()
            .create_sip_outbound_trunk(
                format!("outbound-{k}"),
                format!("sip-{k}.carrier.example.com"),
                vec![format!("+1555020{k}")],
                CreateSIPOutboundTrunkOptions {
                    auth_username: format!("out-{k}"),
                    auth_password: format!("secret-out-{k}"),
                    ..Default::default()
                },
            )
            .await?;
    }
    for k in 0..RULES {
        let rule = if k % 2 == 0 {
            proto::sip_dispatch_rule::Rule::DispatchRuleDirect(proto::SipDispatchRuleDirect {
                room_name: room_name(k % rooms.max(1)),
                pin: String::new(),
            })
        } else {
            proto::sip_dispatch_rule::Rule::DispatchRuleIndividual(
                proto::SipDispatchRuleIndividual {
                    room_prefix: format!("call-{k}-"),
                    ..Default::default()
                },
            )
        };
        api.sip()
            .create_sip_dispatch_rule(
                rule,
                CreateSIPDispatchRuleOptions {
                    name: format!("rule-{k}"),
                    metadata: format!("{{\"rule\":{k}}}"),
                    trunk_ids: vec![trunk_ids[k % trunk_ids.len()].clone()],
                    ..Default::default()
                },
            )
            .await?;
    }
    Ok(())
}

// --- snapshot and restore ---------------------------------------------------------------------

async fn snapshot(url: &str, repo: &RepoArgs) -> AnyResult<()> {
    let livekit = livekit(url)?;
    let repo = repo.open().await?;
    let started = Instant::now();
    let report = LiveKitSnapshot::new(COMPONENT.parse()?, livekit)
        .backup(BackupRequest::new(&repo).base(BackupBase::LatestFull(&repo)))
        .await?;
    let details = LiveKitSnapshotDetails::of(&report.manifest)?
        .ok_or("the snapshot has no LiveKit details")?;
    let kind = match details.unchanged_since {
        Some(base) => format!("unchanged since {base}: a confirmation"),
        None => format!("{} bytes of state", report.manifest.total_size()),
    };
    eprintln!(
        "snapshot {} ({kind}) in {:.2} s",
        report.manifest.id,
        secs(started)
    );
    if !details.unreadable.is_empty() {
        return Err(format!("parts could not be read: {:?}", details.unreadable).into());
    }
    let c = details.counts;
    println!(
        "rooms {} participants {} egress {} agent_dispatches {} ingress {} sip_trunks {} sip_dispatch_rules {}",
        c.rooms,
        c.participants,
        c.egress,
        c.agent_dispatches,
        c.ingress,
        c.sip_trunks,
        c.sip_dispatch_rules
    );
    Ok(())
}

async fn restore(url: &str, repo: &RepoArgs) -> AnyResult<()> {
    let livekit = livekit(url)?;
    let repo = repo.open().await?;
    let started = Instant::now();
    let target = RecoveryTarget::Latest;
    let objectives = Objectives::new("5m".parse()?, "1m".parse()?);
    let report = LiveKitRestore::new(COMPONENT.parse()?, livekit)
        .restore_state(RestoreRequest::new(&repo, &target, objectives))
        .await?;
    eprintln!("restored in {:.2} s", secs(started));
    if let Some(failed) = report.applied.failed().next() {
        return Err(format!(
            "{} things were not given back, the first: {failed:?}",
            report.applied.failed().count()
        )
        .into());
    }
    let kinds = [
        ("rooms", ItemKind::Room),
        ("agent_dispatches", ItemKind::AgentDispatch),
        ("egress", ItemKind::Egress),
        ("ingress", ItemKind::Ingress),
        ("sip_inbound_trunks", ItemKind::SipInboundTrunk),
        ("sip_outbound_trunks", ItemKind::SipOutboundTrunk),
        ("sip_dispatch_rules", ItemKind::SipDispatchRule),
    ];
    let line: Vec<String> = kinds
        .iter()
        .map(|(name, kind)| {
            format!(
                "{name} {}+{}",
                report.applied.count(*kind, &Outcome::Created),
                report.applied.count(*kind, &Outcome::Unchanged)
            )
        })
        .collect();
    // Created + found there (the unnamed agent's dispatch, which CreateRoom makes).
    println!("{}", line.join(" "));
    Ok(())
}

// --- tokens ------------------------------------------------------------------------------------

async fn tokens(url: &str, out: PathBuf) -> AnyResult<()> {
    let started = Instant::now();
    let (key, secret) = keys()?;
    let rooms = LiveKitApi::with_api_key(url, &key, &secret)
        .room()
        .list_rooms(Vec::new())
        .await?;
    let mut file = String::new();
    let admin = AccessToken::with_api_key(&key, &secret)
        .with_grants(VideoGrants {
            room_list: true,
            room_create: true,
            room_record: true,
            ingress_admin: true,
            ..Default::default()
        })
        .with_sip_grants(SIPGrants {
            admin: true,
            ..Default::default()
        })
        .with_ttl(TOKEN_TTL)
        .to_jwt()?;
    file.push_str(&format!("{admin}\n"));
    for room in &rooms {
        let token = AccessToken::with_api_key(&key, &secret)
            .with_grants(VideoGrants {
                room_admin: true,
                room: room.name.clone(),
                ..Default::default()
            })
            .with_ttl(TOKEN_TTL)
            .to_jwt()?;
        file.push_str(&format!("{} {token}\n", room.name));
    }
    std::fs::write(&out, file)?;
    eprintln!("wrote 1 + {} tokens in {:.2} s", rooms.len(), secs(started));
    Ok(())
}

// --- check ---------------------------------------------------------------------------------------

/// A state as what a restore can give back: ids, stream keys, times and
/// participants left out, every part sorted, as canonical JSON strings.
struct Comparable {
    parts: BTreeMap<&'static str, Vec<String>>,
    participants: usize,
}

fn canonical(value: Value) -> String {
    // serde_json's maps are sorted (no `preserve_order`), so this is canonical.
    value.to_string()
}

fn comparable(state: &LiveKitState) -> AnyResult<Comparable> {
    let mut parts: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut participants = 0;
    for room in &state.rooms {
        participants += room.participants.len();
        parts.entry("rooms").or_default().push(canonical(json!({
            "name": room.name,
            "metadata": room.metadata,
            "empty_timeout": room.empty_timeout,
            "departure_timeout": room.departure_timeout,
            "max_participants": room.max_participants,
        })));
        for d in &room.agent_dispatches {
            parts
                .entry("agent dispatches")
                .or_default()
                .push(canonical(json!({
                    "room": room.name,
                    "agent_name": d.agent_name,
                    "metadata": d.metadata,
                    "attributes": d.attributes,
                })));
        }
        for e in &room.egress {
            // The request that started it, in LiveKit's JSON.
            let kept = proto::EgressInfo {
                room_name: e.room_name.clone(),
                source_type: e.source_type,
                request: e.request.clone(),
                ..Default::default()
            };
            parts
                .entry("egress")
                .or_default()
                .push(canonical(serde_json::to_value(&kept)?));
        }
    }
    for ingress in &state.ingress {
        let mut kept = ingress.clone();
        kept.ingress_id.clear();
        kept.stream_key.clear();
        kept.state = None;
        parts
            .entry("ingress")
            .or_default()
            .push(canonical(serde_json::to_value(&kept)?));
    }
    let mut trunk_names = BTreeMap::new();
    for trunk in &state.sip_inbound_trunks {
        trunk_names.insert(trunk.sip_trunk_id.clone(), trunk.name.clone());
        let mut kept = trunk.clone();
        kept.sip_trunk_id.clear();
        parts
            .entry("sip inbound trunks")
            .or_default()
            .push(canonical(serde_json::to_value(&kept)?));
    }
    for trunk in &state.sip_outbound_trunks {
        trunk_names.insert(trunk.sip_trunk_id.clone(), trunk.name.clone());
        let mut kept = trunk.clone();
        kept.sip_trunk_id.clear();
        parts
            .entry("sip outbound trunks")
            .or_default()
            .push(canonical(serde_json::to_value(&kept)?));
    }
    for rule in &state.sip_dispatch_rules {
        let mut kept = rule.clone();
        kept.sip_dispatch_rule_id.clear();
        for id in &mut kept.trunk_ids {
            *id = format!(
                "trunk named {}",
                trunk_names.get(id).map_or("(unknown)", String::as_str)
            );
        }
        parts
            .entry("sip dispatch rules")
            .or_default()
            .push(canonical(serde_json::to_value(&kept)?));
    }
    for items in parts.values_mut() {
        items.sort();
    }
    Ok(Comparable {
        parts,
        participants,
    })
}

async fn check(source: &str, target: &str) -> AnyResult<()> {
    let started = Instant::now();
    let (source, target) = (livekit(source)?, livekit(target)?);
    let (from, to) = tokio::join!(
        LiveKitState::read(&source, None),
        LiveKitState::read(&target, None)
    );
    let (from, to) = (comparable(&from?)?, comparable(&to?)?);
    let names: std::collections::BTreeSet<&str> =
        from.parts.keys().chain(to.parts.keys()).copied().collect();
    let empty = Vec::new();
    let mut said = Vec::new();
    for name in names {
        let (a, b) = (
            from.parts.get(name).unwrap_or(&empty),
            to.parts.get(name).unwrap_or(&empty),
        );
        if a != b {
            let first = a
                .iter()
                .zip(b.iter())
                .find(|(x, y)| x != y)
                .map(|(x, y)| format!("source {x}\n  target {y}"))
                .unwrap_or_else(|| "one holds more than the other".into());
            return Err(format!(
                "{name}: the source has {}, the target {}; the first difference:\n  {first}",
                a.len(),
                b.len()
            )
            .into());
        }
        said.push(format!("{name} {}", a.len()));
    }
    eprintln!(
        "the target holds what the source does ({}; participants: source {}, target {}) \
         (checked in {:.2} s)",
        said.join(", "),
        from.participants,
        to.participants,
        secs(started)
    );
    println!("{}", said.join(", "));
    Ok(())
}
