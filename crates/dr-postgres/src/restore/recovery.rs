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

/// Polls the restored server until it has left recovery.
pub(super) async fn wait_for_promotion(
    config: &tokio_postgres::Config,
    timeout: Duration,
) -> dr_core::Result<Promoted> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last_error = match query_promotion(config).await {
            Ok(Some(promoted)) => return Ok(promoted),
            Ok(None) => "it was still recovering".to_owned(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(dr_core::Error::Timeout {
                operation: format!("waiting for the restored server to promote ({last_error})"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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
