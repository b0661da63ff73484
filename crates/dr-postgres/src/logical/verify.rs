//! Checking a logical backup without restoring it: each stored dump reads
//! whole (its length and SHA-256 against the snapshot's record), lists with
//! `pg_restore --list`, and its table of contents holds the data of every
//! table recorded; the globals read whole.

use dr_core::{
    ComponentId, Finding, Problem, SnapshotId, SnapshotSource, SnapshotSourceExt, Timeline,
    VerificationReport, Verify, async_trait,
};

use crate::logical::details::{DumpedDatabase, LogicalBackupDetails};
use crate::logical::tools::{PgTools, feed};

/// Checks `component`'s logical backups ([`verify_logical_backup`] as
/// dr-core's [`Verify`]).
#[derive(Debug, Clone)]
pub struct LogicalBackupVerifier {
    component: ComponentId,
    tools: PgTools,
}

impl LogicalBackupVerifier {
    /// A verifier of `component`'s logical backups, with `pg_restore` from `tools`.
    pub fn new(component: ComponentId, tools: PgTools) -> Self {
        Self { component, tools }
    }
}

#[async_trait]
impl Verify for LogicalBackupVerifier {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    async fn verify(
        &self,
        source: &dyn SnapshotSource,
        snapshot: &SnapshotId,
    ) -> dr_core::Result<VerificationReport> {
        crate::verify::check_component(source, snapshot, &self.component).await?;
        verify_logical_backup(source, snapshot, &self.tools).await
    }
}

/// Checks the logical backup `snapshot` of `source` without restoring it,
/// with `pg_restore` from `tools`. Damage is reported as findings, each
/// naming the database's stream; the error is for what kept the check from
/// running.
///
/// # Errors
/// The snapshot is not a logical backup, the source failed, or
/// `pg_restore` is missing.
pub async fn verify_logical_backup(
    source: &dyn SnapshotSource,
    snapshot: &SnapshotId,
    tools: &PgTools,
) -> dr_core::Result<VerificationReport> {
    let mut timeline = Timeline::start_now();
    let manifest = source.manifest(snapshot).await?;
    let details = LogicalBackupDetails::of(&manifest)?;
    let program = tools.program("pg_restore")?;
    let mut findings = Vec::new();
    let mut checked = 0u64;
    let mut bytes = 0u64;
    for database in &details.databases {
        let step = format!("list {}", database.name);
        let (found, listed, size) = timeline
            .step(step, check_dump(source, snapshot, database, &program))
            .await?;
        findings.extend(found);
        checked += listed;
        bytes += size;
    }
    if let Some(globals) = &details.globals {
        let read = async {
            let mut reader = source.open_stream(snapshot, globals).await?;
            let mut sink = tokio::io::sink();
            Ok::<_, dr_core::Error>(tokio::io::copy(&mut reader, &mut sink).await)
        };
        match timeline.step("read globals", read).await? {
            Ok(n) => {
                bytes += n;
                checked += 1;
            }
            Err(e) => findings.push(Finding::new(
                globals.as_str(),
                Problem::Malformed {
                    reason: format!("the stored stream does not read back: {e}"),
                },
            )),
        }
    }
    Ok(VerificationReport {
        snapshot: *snapshot,
        checked,
        bytes,
        findings,
        timeline,
    })
}

/// One database's dump, read and listed: the findings, the tables found
/// and the bytes read.
async fn check_dump(
    source: &dyn SnapshotSource,
    snapshot: &SnapshotId,
    database: &DumpedDatabase,
    program: &std::path::Path,
) -> dr_core::Result<(Vec<Finding>, u64, u64)> {
    let object = database.stream.as_str();
    let mut findings = Vec::new();
    let reader = source.open_stream(snapshot, &database.stream).await?;
    let mut counted = Counted {
        inner: reader,
        bytes: 0,
    };
    let mut command = tokio::process::Command::new(program);
    command.arg("--list");
    let fed = feed("pg_restore", command, &mut counted, true).await?;
    if let Some(e) = fed.input_error {
        findings.push(Finding::new(
            object,
            Problem::Malformed {
                reason: format!("the stored dump does not read back: {e}"),
            },
        ));
        return Ok((findings, 0, counted.bytes));
    }
    if !fed.status.success() {
        findings.push(Finding::new(
            object,
            Problem::Malformed {
                reason: format!("pg_restore --list failed ({}): {}", fed.status, fed.stderr),
            },
        ));
        return Ok((findings, 0, counted.bytes));
    }
    let listing = String::from_utf8_lossy(&fed.stdout);
    let data: Vec<&str> = listing
        .lines()
        .filter(|line| !line.starts_with(';') && line.contains(" TABLE DATA "))
        .collect();
    let mut found = 0u64;
    for table in &database.tables {
        let entry = format!(" TABLE DATA {} {} ", table.schema, table.name);
        if data.iter().any(|line| line.contains(&entry)) {
            found += 1;
        } else {
            findings.push(Finding::new(
                format!("{object}: table {}.{}", table.schema, table.name),
                Problem::Missing,
            ));
        }
    }
    for line in &data {
        let recorded = database
            .tables
            .iter()
            .any(|table| line.contains(&format!(" TABLE DATA {} {} ", table.schema, table.name)));
        if !recorded {
            findings.push(Finding::new(
                format!("{object}: {}", line.trim()),
                Problem::Unrecorded {
                    within: Some(object.to_owned()),
                },
            ));
        }
    }
    Ok((findings, found, counted.bytes))
}

/// A reader that counts what passes.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes += (buf.filled().len() - before) as u64;
        polled
    }
}
