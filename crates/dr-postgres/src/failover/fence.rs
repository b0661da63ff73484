//! [`SqlFence`]: a primary that still answers made read-only over SQL.

use dr_core::async_trait;
use dr_core::{Fence, Member};

use crate::failover::cluster::PgCluster;
use crate::replication::SqlClient;

/// Fences a member that still answers: `default_transaction_read_only` set
/// in its configuration and reloaded, then every other client session
/// ended, so that no session that began writable remains. A member that
/// does not answer cannot be fenced this way: the fence fails, and an
/// automatic failover needs a fence that works without the member (one
/// that stops its machine or its workload).
///
/// A session may still `SET default_transaction_read_only = off`
/// explicitly: this fence stops applications, not a determined superuser.
#[derive(Debug, Clone)]
pub struct SqlFence {
    cluster: PgCluster,
}

impl SqlFence {
    /// Fences members of `cluster`, found by name.
    pub fn new(cluster: PgCluster) -> Self {
        Self { cluster }
    }
}

impl SqlFence {
    /// Lifts the fence: `default_transaction_read_only` reset and the
    /// configuration reloaded, so that the member takes writes again.
    ///
    /// # Errors
    /// The member is not in the cluster, or does not answer.
    pub async fn lift(&self, member: &Member) -> dr_core::Result<()> {
        let pg = self.cluster.get(&member.name).ok_or_else(|| {
            dr_core::Error::invalid("fence", format!("{} is not a member", member.name))
        })?;
        let database = pg.config.get_dbname().unwrap_or("postgres");
        let mut sql = SqlClient::connect(&pg.config, &self.cluster.tls, database).await?;
        sql.query("ALTER SYSTEM RESET default_transaction_read_only")
            .await?;
        sql.query("SELECT pg_reload_conf()").await?;
        sql.close().await.ok();
        Ok(())
    }
}

#[async_trait]
impl Fence for SqlFence {
    async fn fence(&self, member: &Member) -> dr_core::Result<()> {
        let pg = self.cluster.get(&member.name).ok_or_else(|| {
            dr_core::Error::invalid("fence", format!("{} is not a member", member.name))
        })?;
        let database = pg.config.get_dbname().unwrap_or("postgres");
        let connecting = SqlClient::connect(&pg.config, &self.cluster.tls, database);
        let mut sql = tokio::time::timeout(self.cluster.probe_timeout, connecting)
            .await
            .map_err(|_| dr_core::Error::Timeout {
                operation: format!("connecting to {} to fence it", member.name),
                after: self.cluster.probe_timeout,
            })??;
        sql.query("ALTER SYSTEM SET default_transaction_read_only = on")
            .await?;
        sql.query("SELECT pg_reload_conf()").await?;
        sql.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .await?;
        // The reload reaches the sessions a moment later.
        let mut read_only = false;
        for _ in 0..50 {
            let rows = sql
                .query("SELECT current_setting('default_transaction_read_only') AS read_only")
                .await?;
            read_only = rows
                .first()
                .and_then(|r| r.get_named("read_only").ok().flatten())
                .is_some_and(|v| v == "on");
            if read_only {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        sql.close().await.ok();
        if !read_only {
            return Err(dr_core::Error::Refused {
                operation: format!("fencing {}", member.name),
                reason: "default_transaction_read_only did not take effect".into(),
            });
        }
        Ok(())
    }
}
