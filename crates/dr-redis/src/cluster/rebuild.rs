//! [`ClusterRebuild`] (dr-core `Restore`): a whole Redis Cluster rebuilt
//! from a cluster snapshot on empty nodes, as a DR plan's "rebuild the
//! cluster" scenario does by hand: slots assigned as the snapshot's masters
//! had them, nodes joined, replicas attached, the data loaded, and the
//! result checked (`cluster_state:ok` everywhere, key counts).

use std::time::{Duration, Instant};

use dr_core::{
    Capabilities, ComponentId, RecoveryReport, Restore, RestoreRequest, Timeline, async_trait,
};

use super::snapshot::ClusterSnapshotDetails;
use crate::error::{Error, Result};
use crate::fetch::conn::{Conn, Reply};
use crate::fetch::{RedisServer, info_field};
use crate::restore::{Conflict, RdbRestore, RestoreCounts, choose, report_of};

/// Rebuilds a cluster snapshot's cluster on empty nodes.
///
/// The first nodes given become the masters, in the snapshot's slot order,
/// each serving the slots its counterpart served; the rest become replicas,
/// as many per master as the snapshot's had while nodes last. Every node
/// must be a cluster-enabled Redis (7.0 or later) that knows no other node,
/// serves no slot and holds no key; node addresses must be IP addresses
/// (what `CLUSTER MEET` takes).
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::{Objectives, RecoveryTarget, Restore, RestoreRequest};
/// use dr_redis::{ClusterRebuild, RedisServer};
///
/// let nodes = (7000..7006).map(|port| RedisServer::new("10.0.0.20", port)).collect();
/// let rebuild = ClusterRebuild::new("redis/cluster".parse()?, nodes);
/// let target = RecoveryTarget::Latest;
/// let objectives = Objectives::new("5m".parse()?, "1m".parse()?);
/// let report = rebuild.restore(RestoreRequest::new(repo, &target, objectives)).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterRebuild {
    component: ComponentId,
    nodes: Vec<RedisServer>,
    wait: Duration,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildOutcome {
    /// The masters, in slot order, by address.
    pub masters: Vec<String>,
    /// The replicas, with the master each follows.
    pub replicas: Vec<(String, String)>,
    /// The restore's counts.
    pub counts: RestoreCounts,
    /// Keys each master holds afterwards (`DBSIZE`), in master order.
    pub keys_per_master: Vec<u64>,
}

impl ClusterRebuild {
    /// A rebuild of `component`'s cluster on `nodes`, waiting up to a
    /// minute for the cluster to form.
    pub fn new(component: ComponentId, nodes: Vec<RedisServer>) -> Self {
        Self {
            component,
            nodes,
            wait: Duration::from_secs(60),
        }
    }

    /// How long to wait for the nodes to meet and the cluster to be ok.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// [`Restore::restore`], with what was built.
    ///
    /// # Errors
    /// As [`Restore::restore`]: a node not empty or not cluster-enabled,
    /// too few nodes, a cluster that does not form in time, a restore that
    /// fails, or key counts that do not match the snapshot's.
    pub async fn rebuild(
        &self,
        request: RestoreRequest<'_>,
    ) -> dr_core::Result<(RecoveryReport, RebuildOutcome)> {
        let mut timeline = Timeline::start_now();
        let manifest = choose(request.snapshots, &self.component, request.target).await?;
        let details = ClusterSnapshotDetails::of(&manifest)?;
        let masters: Vec<_> = details.layout.masters().cloned().collect();
        if self.nodes.len() < masters.len() {
            return Err(dr_core::Error::invalid(
                format!("rebuild of {}", self.component),
                format!(
                    "the snapshot's cluster has {} masters; {} nodes were given",
                    masters.len(),
                    self.nodes.len()
                ),
            ));
        }
        let mut conns = timeline
            .step("check the nodes are empty cluster nodes", async {
                let mut conns = Vec::new();
                for node in &self.nodes {
                    conns.push(empty_node(node).await?);
                }
                Ok::<_, dr_core::Error>(conns)
            })
            .await?;

        // Roles: masters first, then replicas as the snapshot had them.
        let mut replica_of = Vec::new();
        let mut spare = masters.len()..self.nodes.len();
        'assign: loop {
            let mut assigned = false;
            for (m, master) in masters.iter().enumerate() {
                let wanted = details.layout.replicas_of(&master.id).count();
                let has = replica_of.iter().filter(|(_, of)| *of == m).count();
                if has < wanted {
                    let Some(node) = spare.next() else {
                        break 'assign;
                    };
                    replica_of.push((node, m));
                    assigned = true;
                }
            }
            if !assigned {
                break;
            }
        }

        let ids = timeline
            .step("assign slots as the snapshot's masters had them", async {
                let mut ids = Vec::new();
                for (i, conn) in conns.iter_mut().enumerate() {
                    if let Some(master) = masters.get(i) {
                        let mut args: Vec<Vec<u8>> =
                            vec![b"CLUSTER".to_vec(), b"ADDSLOTSRANGE".to_vec()];
                        for (a, b) in &master.slots {
                            args.push(a.to_string().into_bytes());
                            args.push(b.to_string().into_bytes());
                        }
                        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                        conn.call("CLUSTER ADDSLOTSRANGE", &args).await?;
                        let epoch = (i + 1).to_string();
                        conn.call(
                            "CLUSTER SET-CONFIG-EPOCH",
                            &[b"CLUSTER", b"SET-CONFIG-EPOCH", epoch.as_bytes()],
                        )
                        .await?;
                    }
                    ids.push(my_id(conn).await?);
                }
                Ok::<_, dr_core::Error>(ids)
            })
            .await?;

        timeline
            .step("join the nodes (CLUSTER MEET)", async {
                let first = conns
                    .first_mut()
                    .ok_or_else(|| dr_core::Error::invalid("rebuild", "no nodes were given"))?;
                for node in &self.nodes[1..] {
                    let (host, port) = (node_host(node), node_port(node));
                    first
                        .call(
                            "CLUSTER MEET",
                            &[b"CLUSTER", b"MEET", host.as_bytes(), port.as_bytes()],
                        )
                        .await?;
                }
                let total = self.nodes.len();
                wait_until(
                    &mut conns,
                    self.wait,
                    "every node to know every other",
                    "NODES",
                    |nodes| nodes.lines().count() == total && !nodes.contains("handshake"),
                )
                .await
            })
            .await?;

        timeline
            .step("attach the replicas (CLUSTER REPLICATE)", async {
                for (node, m) in &replica_of {
                    let id = ids[*m].as_bytes();
                    conns[*node]
                        .call("CLUSTER REPLICATE", &[b"CLUSTER", b"REPLICATE", id])
                        .await?;
                }
                wait_until(
                    &mut conns,
                    self.wait,
                    "cluster_state:ok on every node",
                    "INFO",
                    |info| info_field(info, "cluster_state") == Some("ok"),
                )
                .await
            })
            .await?;

        let restore = RdbRestore::into_cluster(self.component.clone(), self.nodes[0].clone())
            .conflict(Conflict::Fail);
        let (_, counts) = timeline
            .step("load the data", restore.restore_counted(request))
            .await?;

        let keys_per_master = timeline
            .step("check the cluster and its key counts", async {
                let mut keys = Vec::new();
                for (i, conn) in conns.iter_mut().enumerate() {
                    let info = cluster_text(conn, "INFO").await?;
                    if info_field(&info, "cluster_state") != Some("ok") {
                        return Err(dr_core::Error::from(Error::WrongTarget {
                            addr: conn.addr().to_owned(),
                            reason: format!("after the load CLUSTER INFO says {info:?}"),
                        }));
                    }
                    if i < masters.len() {
                        keys.push(dbsize(conn).await?);
                    }
                }
                let total: u64 = keys.iter().sum();
                let expected = details.keys();
                if total != counts.restored || counts.restored + counts.expired != expected {
                    return Err(dr_core::Error::corrupt(
                        format!("the rebuilt cluster of {}", self.component),
                        format!(
                            "its masters hold {total} keys; {} were restored and {} had expired, \
                             of {expected} in the snapshot",
                            counts.restored, counts.expired
                        ),
                    ));
                }
                Ok(keys)
            })
            .await?;

        let report = report_of(&self.component, &request, timeline, &manifest);
        let outcome = RebuildOutcome {
            masters: self.nodes[..masters.len()]
                .iter()
                .map(RedisServer::addr)
                .collect(),
            replicas: replica_of
                .iter()
                .map(|(node, m)| (self.nodes[*node].addr(), self.nodes[*m].addr()))
                .collect(),
            counts,
            keys_per_master,
        };
        Ok((report, outcome))
    }
}

#[async_trait]
impl Restore for ClusterRebuild {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        Ok(self.rebuild(request).await?.0)
    }
}

/// Connects to `node` and checks it is an empty cluster node.
async fn empty_node(node: &RedisServer) -> Result<Conn> {
    let (mut conn, _) = node.connect().await?;
    let wrong = |conn: &Conn, reason: String| Error::WrongTarget {
        addr: conn.addr().to_owned(),
        reason,
    };
    let cluster = crate::fetch::info(&mut conn, "cluster").await?;
    if info_field(&cluster, "cluster_enabled") != Some("1") {
        return Err(wrong(&conn, "it is not cluster-enabled".into()));
    }
    let info = cluster_text(&mut conn, "INFO").await?;
    let known = info_field(&info, "cluster_known_nodes").unwrap_or("?");
    let slots = info_field(&info, "cluster_slots_assigned").unwrap_or("?");
    if known != "1" || slots != "0" {
        return Err(wrong(
            &conn,
            format!(
                "it is not an empty node: it knows {known} nodes and {slots} slots are assigned \
                 (CLUSTER RESET it first)"
            ),
        ));
    }
    let keys = dbsize(&mut conn).await?;
    if keys > 0 {
        return Err(wrong(&conn, format!("it holds {keys} keys")));
    }
    Ok(conn)
}

async fn cluster_text(conn: &mut Conn, what: &'static str) -> Result<String> {
    let command = if what == "INFO" {
        "CLUSTER INFO"
    } else {
        "CLUSTER NODES"
    };
    match conn.call(command, &[b"CLUSTER", what.as_bytes()]).await? {
        Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(&text).into_owned()),
        other => Err(Error::NotRedis {
            addr: conn.addr().to_owned(),
            reason: format!("{command} answered {other:?}"),
        }),
    }
}

async fn my_id(conn: &mut Conn) -> Result<String> {
    match conn.call("CLUSTER MYID", &[b"CLUSTER", b"MYID"]).await? {
        Reply::Bulk(Some(id)) => Ok(String::from_utf8_lossy(&id).into_owned()),
        other => Err(Error::NotRedis {
            addr: conn.addr().to_owned(),
            reason: format!("CLUSTER MYID answered {other:?}"),
        }),
    }
}

async fn dbsize(conn: &mut Conn) -> Result<u64> {
    match conn.call("DBSIZE", &[b"DBSIZE"]).await? {
        Reply::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
        other => Err(Error::NotRedis {
            addr: conn.addr().to_owned(),
            reason: format!("DBSIZE answered {other:?}"),
        }),
    }
}

fn node_host(node: &RedisServer) -> String {
    let addr = node.addr();
    let (host, _) = addr.rsplit_once(':').unwrap_or((&addr, ""));
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn node_port(node: &RedisServer) -> String {
    let addr = node.addr();
    addr.rsplit_once(':')
        .map(|(_, port)| port.to_owned())
        .unwrap_or_default()
}

/// Polls `CLUSTER <section>` on every node every 100 ms until `ok` holds
/// on all, for at most `within`.
async fn wait_until(
    conns: &mut [Conn],
    within: Duration,
    what: &str,
    section: &'static str,
    ok: impl Fn(&str) -> bool,
) -> dr_core::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let mut last = None;
        for conn in conns.iter_mut() {
            let text = cluster_text(conn, section).await?;
            if !ok(&text) {
                last = Some(format!("{}: {text}", conn.addr()));
                break;
            }
        }
        let Some(last) = last else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(dr_core::Error::Timeout {
                operation: format!("waiting for {what} (last seen: {last})"),
                after: within,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
