//! Step 4's recovery settings, and step 5: waiting for the started server to promote.

use std::time::Duration;

use dr_core::{Lsn, Position, RecoveryTarget};
use jiff::Timestamp;

use super::PitrRestore;
use super::wal::WalPlan;

impl PitrRestore {
    pub(super) fn write_recovery_settings(
        &self,
        target: &RecoveryTarget,
        plan: &WalPlan,
    ) -> dr_core::Result<()> {
        let staging = self.staging_dir();
        let quote = |s: &str| s.replace('\'', "''");
        let mut conf = format!(
            "\n# Written by drkit's point-in-time restore.\n\
             restore_command = 'cp \"{}/%f\" \"%p\"'\n\
             recovery_target_timeline = '{}'\n",
            quote(&staging.display().to_string()),
            plan.path.current
        );
        match target {
            RecoveryTarget::Latest => {}
            RecoveryTarget::Snapshot(_) => conf.push_str("recovery_target = 'immediate'\n"),
            RecoveryTarget::Time(at) => conf.push_str(&format!(
                "recovery_target_time = '{}'\n",
                at.strftime("%Y-%m-%d %H:%M:%S%.6f+00")
            )),
            RecoveryTarget::Position(Position::Postgres { lsn, .. }) => {
                conf.push_str(&format!("recovery_target_lsn = '{lsn}'\n"));
            }
            RecoveryTarget::RestorePoint(name) => {
                conf.push_str(&format!("recovery_target_name = '{}'\n", quote(name)));
            }
            other => {
                return Err(dr_core::Error::invalid(
                    "recovery target",
                    format!("{other:?} is not supported"),
                ));
            }
        }
        conf.push_str("recovery_target_action = 'promote'\n");
        let auto = self.data_dir.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&auto).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&auto, existing)
            .map_err(|e| dr_core::Error::io(format!("writing {}", auto.display()), e))?;
        std::fs::remove_file(self.data_dir.join("standby.signal")).ok();
        let signal = self.data_dir.join("recovery.signal");
        std::fs::write(&signal, b"")
            .map_err(|e| dr_core::Error::io(format!("writing {}", signal.display()), e))?;
        Ok(())
    }
}

/// What the restored server reports once promoted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Promoted {
    /// The time of the last transaction it replayed.
    pub(super) last_transaction: Option<Timestamp>,
    /// Where the last WAL record it replayed ends.
    pub(super) replayed: Option<Lsn>,
}

/// How many connection attempts in a row may fail, a poll apart, before a
/// restored server that answered once is taken for stopped.
const UNANSWERED_POLLS: u32 = 5;
/// How often the restored server is asked whether it has promoted.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Polls the restored server until it has left recovery. The server's own
/// refusals while it starts (`the database system is starting up`) are
/// waited out; a server that cannot be reached [`UNANSWERED_POLLS`] times in
/// a row has stopped, and the last error says how.
pub(super) async fn wait_for_promotion(
    config: &tokio_postgres::Config,
) -> dr_core::Result<Promoted> {
    let mut unanswered = 0;
    loop {
        match query_promotion(config).await {
            Ok(Some(promoted)) => return Ok(promoted),
            Ok(None) => unanswered = 0,
            Err(e) if e.as_db_error().is_some() => unanswered = 0,
            Err(e) => {
                unanswered += 1;
                if unanswered >= UNANSWERED_POLLS {
                    return Err(dr_core::Error::other(
                        dr_core::ErrorKind::Unavailable,
                        "the restored server stopped answering while it replayed WAL \
                         (its log says why)",
                        e,
                    ));
                }
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `None` while in recovery; else what was replayed.
async fn query_promotion(
    config: &tokio_postgres::Config,
) -> Result<Option<Promoted>, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
             extract(epoch FROM pg_last_xact_replay_timestamp())::float8, \
             pg_last_wal_replay_lsn()::text",
            &[],
        )
        .await;
    drop(client);
    task.abort();
    let row = row?;
    if row.get::<_, bool>(0) {
        return Ok(None);
    }
    let last_transaction: Option<f64> = row.get(1);
    let replayed: Option<String> = row.get(2);
    Ok(Some(Promoted {
        last_transaction: last_transaction
            .and_then(|secs| Timestamp::from_microsecond((secs * 1e6) as i64).ok()),
        replayed: replayed.and_then(|text| text.parse().ok()),
    }))
}
