//! `drkit failover <component>`: the primary (a PostgreSQL primary, a Redis
//! master) failed over to the most advanced healthy replica (or the one
//! named), or moved in a planned switchover; `--dry-run` prints the plan
//! alone. A member that answers is fenced over its own protocol (PostgreSQL:
//! read-only over SQL; Redis: writes paused, or made the replica of a newer
//! master); one that does not, by the component's `fence_command`. The
//! failover lease is taken in the repository, so that two operators (or an
//! agent) never promote twice.

use std::sync::Arc;

use dr_core::{
    ComponentId, Failover, FailoverHooks, FailoverMode, FailoverRequest, Fence, LossLimit, Member,
    Rewire, async_trait,
};
use dr_postgres::{ClusterState, PgCluster, PgFailover, SqlFence};
use dr_redis::{PauseWrites, RedisFailover, RedisServer};
use dr_storage::Repository;
use drkit::{Component, FailoverSettings, LossLimitSetting};

use crate::context::Context;
use crate::failure::{Failure, Outcome};
use crate::output::Output;

/// What the command line asks.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailoverArgs {
    pub(crate) dry_run: bool,
    pub(crate) switchover: bool,
    pub(crate) force: bool,
    pub(crate) to: Option<String>,
    pub(crate) known_dead: bool,
}

pub(crate) fn settings(component: &Component) -> Result<&FailoverSettings, Failure> {
    component
        .postgres()
        .and_then(|pg| pg.failover())
        .or_else(|| component.redis().and_then(|redis| redis.failover()))
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{} has no [component.failover] table naming its members; add one to fail it over",
                component.id()
            ))
        })
}

pub(crate) async fn pg_cluster(cx: &Context, component: &Component) -> Result<PgCluster, Failure> {
    let failover = settings(component)?;
    let (config, tls) = cx.postgres(component).await?;
    Ok(failover.cluster(component.id(), &config, tls))
}

/// A `redis` component's members, each reached with the component's
/// credentials and TLS at its own address.
pub(crate) async fn redis_members(
    cx: &Context,
    component: &Component,
) -> Result<Vec<(String, RedisServer)>, Failure> {
    let failover = settings(component)?;
    let mut members = Vec::with_capacity(failover.members().len());
    for member in failover.members() {
        let server = cx.redis_server(component, &member.address()).await?;
        members.push((member.name().to_owned(), server));
    }
    Ok(members)
}

/// The failover of `component` and the fence it needs, by its kind.
pub(crate) async fn failover_of(
    cx: &Context,
    component: &Component,
) -> Result<(Arc<dyn Failover>, Arc<dyn Fence>), Failure> {
    let failover = settings(component)?;
    if component.redis().is_some() {
        let members = redis_members(cx, component).await?;
        let fence = ClusterFence::new(
            Arc::new(PauseWrites::new(members.clone(), FENCE_PAUSE)),
            failover,
        );
        let mut redis = RedisFailover::new(component.id().clone(), members);
        // A member that hangs is given up on as the monitor's probes do.
        if let Some(automatic) = failover.automatic() {
            redis = redis.probe_timeout(automatic.timeout);
        }
        return Ok((Arc::new(redis), Arc::new(fence)));
    }
    let cluster = pg_cluster(cx, component).await?;
    let fence = ClusterFence::new(Arc::new(SqlFence::new(cluster.clone())), failover);
    Ok((Arc::new(PgFailover::new(cluster)), Arc::new(fence)))
}

/// How long a Redis master that answers has its writes paused while the
/// failover promotes a replica (the promotion lifts the pause sooner).
const FENCE_PAUSE: std::time::Duration = std::time::Duration::from_secs(60);

/// The cluster as it is now, for `drkit status`; none without a
/// `[component.failover]` table.
pub(crate) async fn state(
    cx: &Context,
    component: &Component,
) -> Result<Option<ClusterState>, Failure> {
    if component.postgres().and_then(|pg| pg.failover()).is_none() {
        return Ok(None);
    }
    let cluster = pg_cluster(cx, component).await?;
    ClusterState::assess(&cluster)
        .await
        .map(Some)
        .map_err(|e| Failure::of(format_args!("assessing {}", component.id()), &e))
}

/// A `redis` component's replication set as it is now, for `drkit status`;
/// none without a `[component.failover]` table.
pub(crate) async fn redis_state(
    cx: &Context,
    component: &Component,
) -> Result<Option<dr_core::ClusterAssessment>, Failure> {
    if component.redis().and_then(|r| r.failover()).is_none() {
        return Ok(None);
    }
    let members = redis_members(cx, component).await?;
    RedisFailover::new(component.id().clone(), members)
        .assess()
        .await
        .map(Some)
        .map_err(|e| Failure::of(format_args!("assessing {}", component.id()), &e))
}

/// Runs the failover (or prints its plan).
pub(crate) async fn run(
    cx: &Context,
    repo: Option<&Repository>,
    component: &Component,
    args: &FailoverArgs,
    out: &Output,
) -> Outcome {
    let failover_settings = settings(component)?;
    let (failover, fence) = failover_of(cx, component).await?;
    let mode = if args.switchover {
        FailoverMode::Switchover
    } else {
        FailoverMode::Failover
    };
    let mut request = request(component, failover_settings, mode);
    if args.force {
        request = request.force();
    }
    if args.known_dead {
        request = request.old_primary_known_dead();
    }
    if let Some(to) = &args.to {
        request = request.to(to.clone());
    }
    if args.dry_run {
        let plan = dr_core::dry_run(failover.as_ref(), &request)
            .await
            .map_err(|e| Failure::Failed(format!("{e}")))?;
        if out.json {
            return out.json(&plan);
        }
        out.line(format_args!("{plan}"));
        out.line("(dry run: nothing was done)");
        return Ok(());
    }
    let Some(repo) = repo else {
        return Err(Failure::Failed(
            "a failover takes the lease in the repository".into(),
        ));
    };
    let rewire = CommandRewire::of(failover_settings);
    let holder = holder("drkit");
    let lease: Arc<dyn dr_core::FailoverLease> = Arc::new(repo.clone());
    let hooks = FailoverHooks {
        lease: Some((
            lease.as_ref(),
            holder.as_str(),
            std::time::Duration::from_secs(120),
        )),
        fence: Some(fence.as_ref()),
        rewire: rewire.as_ref().map(|r| r as &dyn Rewire),
    };
    let outcome = dr_core::execute(failover.as_ref(), &request, hooks)
        .await
        .map_err(|e| Failure::Failed(format!("{e}")))?;
    if out.json {
        out.json(&serde_json::json!({
            "plan": outcome.plan,
            "report": outcome.report,
        }))?;
    } else {
        out.line(format_args!("{}", outcome.plan));
        out.line(format_args!("{}", outcome.report));
    }
    crate::commands::restore::verdict(&outcome.report)
}

/// Who takes the failover lease: `<what>-<host>-<process>`.
pub(crate) fn holder(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".into()),
        std::process::id()
    )
}

/// The request a failover of `component` makes: its objectives, its loss
/// limit.
pub(crate) fn request(
    component: &Component,
    settings: &FailoverSettings,
    mode: FailoverMode,
) -> FailoverRequest {
    let loss_limit = match settings.loss_limit() {
        LossLimitSetting::Bytes(n) => LossLimit::Bytes(n),
        LossLimitSetting::Rpo => LossLimit::Within(component.objectives().rpo),
    };
    FailoverRequest::new(mode, component.objectives(), loss_limit)
}

/// Fences a member that answers over its own protocol (PostgreSQL's
/// `SqlFence`: read-only, its sessions ended; Redis's `PauseWrites`), and
/// one that does not with the `fence_command`.
pub(crate) struct ClusterFence {
    answering: Arc<dyn Fence>,
    command: Option<HookCommand>,
}

impl ClusterFence {
    pub(crate) fn new(answering: Arc<dyn Fence>, settings: &FailoverSettings) -> Self {
        Self {
            answering,
            command: settings
                .fence_command()
                .map(|words| HookCommand::new("fence", words, settings)),
        }
    }
}

#[async_trait]
impl Fence for ClusterFence {
    async fn fence(&self, member: &Member) -> dr_core::Result<()> {
        if member.reachable {
            return self.answering.fence(member).await;
        }
        let Some(command) = &self.command else {
            return Err(dr_core::Error::Refused {
                operation: format!("fencing {}", member.name),
                reason: "it does not answer and the component has no fence_command".into(),
            });
        };
        command
            .run(&format!("fencing {}", member.name), member)
            .await
    }
}

/// The `rewire_command`: clients pointed at the new primary.
pub(crate) struct CommandRewire(HookCommand);

impl CommandRewire {
    /// The component's `rewire_command`, if it has one.
    pub(crate) fn of(settings: &FailoverSettings) -> Option<Self> {
        settings
            .rewire_command()
            .map(|words| Self(HookCommand::new("rewire", words, settings)))
    }
}

#[async_trait]
impl Rewire for CommandRewire {
    async fn rewire(&self, component: &ComponentId, primary: &Member) -> dr_core::Result<()> {
        self.0
            .run(
                &format!("pointing {component}'s clients at {}", primary.name),
                primary,
            )
            .await
    }
}

/// A command of the failover table, run for one member: its words with
/// `{member}` and `{address}` replaced; it must exit 0.
pub(crate) struct HookCommand {
    what: &'static str,
    words: Vec<String>,
    /// Each member's name and `host:port`.
    members: Vec<(String, String)>,
}

impl HookCommand {
    fn new(what: &'static str, words: &[String], settings: &FailoverSettings) -> Self {
        Self {
            what,
            words: words.to_vec(),
            members: settings
                .members()
                .iter()
                .map(|m| (m.name().to_owned(), m.address()))
                .collect(),
        }
    }

    async fn run(&self, operation: &str, member: &Member) -> dr_core::Result<()> {
        let address = self
            .members
            .iter()
            .find(|(name, _)| *name == member.name)
            .map_or("", |(_, address)| address.as_str());
        let words: Vec<String> = self
            .words
            .iter()
            .map(|w| {
                w.replace("{member}", &member.name)
                    .replace("{address}", address)
            })
            .collect();
        let output = tokio::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                dr_core::Error::io(format!("running the {} command {}", self.what, words[0]), e)
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(dr_core::Error::Refused {
            operation: operation.to_owned(),
            reason: format!(
                "the {} command {} ended {}: {}",
                self.what,
                words.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// `drkit rejoin <component> <member> --data-dir <dir>`, on the former
/// primary's host, its server stopped: the data directory rewound (or
/// copied afresh, the old one kept aside) to follow the cluster's primary.
pub(crate) async fn rejoin(
    cx: &Context,
    component: &Component,
    member: &str,
    data_dir: &std::path::Path,
    out: &Output,
) -> Outcome {
    let cluster = pg_cluster(cx, component).await?;
    if cluster.get(member).is_none() {
        return Err(Failure::Usage(format!(
            "{member} is not a member of {} (see its [component.failover] table)",
            component.id()
        )));
    }
    let state = ClusterState::assess(&cluster)
        .await
        .map_err(|e| Failure::of(format_args!("assessing {}", component.id()), &e))?;
    let Some((primary, _)) = state.primary() else {
        return Err(Failure::Failed(format!(
            "{} has no one primary taking writes to follow:\n{state}",
            component.id()
        )));
    };
    if primary.name == member {
        return Err(Failure::Failed(format!(
            "{member} is the primary: there is nothing to rejoin"
        )));
    }
    let source = cluster
        .get(&primary.name)
        .map(|m| m.config().clone())
        .ok_or_else(|| Failure::Failed(format!("no member {}", primary.name)))?;
    let postgres = component.postgres().ok_or_else(|| {
        Failure::Usage(format!("{} is not a PostgreSQL component", component.id()))
    })?;
    let (_, tls) = cx.postgres(component).await?;
    let report = dr_postgres::Rejoin::new(member, data_dir)
        .tools(postgres.pg_tools())
        .libpq_tls(postgres.libpq_tls())
        .tls(tls)
        .run(&source)
        .await
        .map_err(|e| Failure::Failed(format!("rejoining {member}: {e}")))?;
    let how = match &report.method {
        dr_postgres::RejoinMethod::Rewound => "rewound with pg_rewind".to_owned(),
        dr_postgres::RejoinMethod::Cloned {
            rewind_failed,
            kept_aside,
        } => format!(
            "copied afresh with pg_basebackup (pg_rewind failed: {rewind_failed}); the old \
             directory is kept at {}",
            kept_aside.display()
        ),
    };
    if out.json {
        return out.json(&serde_json::json!({
            "member": member,
            "follows": primary.name,
            "method": how,
            "timeline": report.timeline,
        }));
    }
    out.line(format_args!(
        "{member}: {how}; it follows {} once started",
        primary.name
    ));
    for step in report.timeline.steps() {
        out.line(format_args!(
            "  {:<40} {}",
            step.name,
            dr_core::Rto::new(step.duration())
        ));
    }
    Ok(())
}
