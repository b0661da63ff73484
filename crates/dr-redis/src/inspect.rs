//! Stored Redis snapshots looked at without a server: listed
//! ([`redis_snapshots`]), verified whole ([`verify_snapshot`]: every value
//! decoded, checksums and key counts against those recorded), and
//! summarised as operators ask of an RDB ([`inspect`]: keys per type and
//! database, the biggest keys, when keys expire).

use std::collections::BTreeMap;

use dr_core::{
    ComponentId, Finding, Manifest, Problem, SnapshotId, SnapshotSource, SnapshotSourceExt,
    Timeline, VerificationReport,
};
use serde::Serialize;
use tokio::io::AsyncRead;

use crate::error::{Result, printable};
use crate::rdb::KeyKind;
use crate::rdb::frame::Event;
use crate::rdb::reader::RdbReader;
use crate::rdb::verify::verify;
use crate::restore::rdb_streams;

/// Whether `manifest` is a Redis snapshot: a server's RDB or a cluster's.
pub fn is_redis_snapshot(manifest: &Manifest) -> bool {
    rdb_streams(manifest).is_ok()
}

/// `component`'s committed Redis snapshots, oldest first.
///
/// # Errors
/// The store failed.
pub async fn redis_snapshots(
    source: &dyn SnapshotSource,
    component: &ComponentId,
) -> dr_core::Result<Vec<Manifest>> {
    let mut all = source.snapshots(component).await?;
    all.retain(is_redis_snapshot);
    Ok(all)
}

/// Reads every RDB of snapshot `id` back whole, with its digest, decodes
/// every value, checks each RDB's CRC-64, and compares its key counts and
/// checksum with those recorded at backup time: each difference is a
/// finding.
///
/// # Errors
/// The snapshot does not exist, is not a Redis snapshot, or the store
/// failed before any data was read.
pub async fn verify_snapshot(
    source: &dyn SnapshotSource,
    id: &SnapshotId,
) -> dr_core::Result<VerificationReport> {
    let mut timeline = Timeline::start_now();
    let manifest = source.manifest(id).await?;
    let rdbs = rdb_streams(&manifest)?;
    let mut findings = Vec::new();
    let (mut checked, mut bytes) = (0, 0);
    for rdb in &rdbs {
        let object = rdb.stream.to_string();
        let verified = timeline
            .step(format!("verify {object}"), async {
                let stream = source.open_stream(id, &rdb.stream).await?;
                Ok::<_, dr_core::Error>(verify(stream).await)
            })
            .await?;
        match verified {
            Err(e) => findings.push(Finding::new(
                &object,
                Problem::Malformed {
                    reason: e.to_string(),
                },
            )),
            Ok(summary) => {
                checked += summary.counts.keys();
                bytes += summary.bytes;
                for difference in summary.counts.differences(&rdb.details.counts) {
                    findings.push(Finding::new(
                        &object,
                        Problem::Malformed {
                            reason: format!("{difference} (as recorded at backup time)"),
                        },
                    ));
                }
                if summary.checksum != rdb.details.checksum {
                    findings.push(Finding::new(
                        &object,
                        Problem::ChecksumMismatch {
                            algorithm: "CRC-64 (RDB)".into(),
                        },
                    ));
                }
            }
        }
    }
    Ok(VerificationReport {
        snapshot: *id,
        checked,
        bytes,
        findings,
        timeline,
    })
}

/// One key among the biggest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BigKey {
    /// Its database.
    pub db: u64,
    /// The key, printable.
    pub key: String,
    /// `TYPE`'s name of its value.
    pub kind: &'static str,
    /// Its value's size as stored in the RDB (encoded, maybe compressed).
    pub bytes: u64,
}

/// Keys by when they expire, from the inspection's time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExpiryHistogram {
    /// Without an expiry.
    pub never: u64,
    /// Expired already.
    pub expired: u64,
    /// Within the hour.
    pub within_hour: u64,
    /// Within the day.
    pub within_day: u64,
    /// Within the week.
    pub within_week: u64,
    /// Within 30 days.
    pub within_month: u64,
    /// Later.
    pub later: u64,
}

/// What an RDB holds, as `drkit redis inspect` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Inspection {
    /// The RDB version.
    pub rdb_version: u16,
    /// The `redis-ver` the RDB names.
    pub redis_version: Option<String>,
    /// Keys per database, then per kind (`TYPE`'s names).
    pub keys: BTreeMap<u64, BTreeMap<&'static str, u64>>,
    /// Stored value bytes per database and kind.
    pub bytes: BTreeMap<u64, BTreeMap<&'static str, u64>>,
    /// The biggest keys by stored size, biggest first.
    pub biggest: Vec<BigKey>,
    /// When keys expire.
    pub expiry: ExpiryHistogram,
    /// Function libraries.
    pub functions: u64,
    /// The RDB's size.
    pub total_bytes: u64,
}

/// Reads the RDB in `reader` (framing it, decoding nothing) and sums up what
/// it holds, keeping the `top` biggest keys; expiries are counted from
/// `now_ms`.
///
/// # Errors
/// The RDB is damaged or truncated, or reading failed.
pub async fn inspect<R: AsyncRead + Unpin>(
    reader: R,
    top: usize,
    now_ms: i64,
) -> Result<Inspection> {
    let mut reader = RdbReader::new(reader);
    let mut out = Inspection::default();
    while let Some(event) = reader.next_event().await? {
        match event {
            Event::Header(header) => out.rdb_version = header.version,
            Event::Aux { key, value } if key == "redis-ver" => {
                out.redis_version = Some(String::from_utf8_lossy(&value).into_owned());
            }
            Event::Function(_) => out.functions += 1,
            Event::Key(key) => {
                let kind = key.value_type.kind().map_or("unknown", KeyKind::name);
                let size = key.value.len() as u64;
                *out.keys.entry(key.db).or_default().entry(kind).or_default() += 1;
                *out.bytes
                    .entry(key.db)
                    .or_default()
                    .entry(kind)
                    .or_default() += size;
                let e = &mut out.expiry;
                match key.expire_at_ms.map(|at| at - now_ms) {
                    None => e.never += 1,
                    Some(left) if left <= 0 => e.expired += 1,
                    Some(left) if left <= 3_600_000 => e.within_hour += 1,
                    Some(left) if left <= 86_400_000 => e.within_day += 1,
                    Some(left) if left <= 7 * 86_400_000 => e.within_week += 1,
                    Some(left) if left <= 30 * 86_400_000 => e.within_month += 1,
                    Some(_) => e.later += 1,
                }
                if top > 0
                    && (out.biggest.len() < top
                        || out.biggest.last().is_some_and(|b| b.bytes < size))
                {
                    let at = out.biggest.partition_point(|b| b.bytes >= size);
                    out.biggest.insert(
                        at,
                        BigKey {
                            db: key.db,
                            key: printable(&key.key),
                            kind,
                            bytes: size,
                        },
                    );
                    out.biggest.truncate(top);
                }
            }
            Event::Eof(eof) => out.total_bytes = eof.size,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_rdb_is_summed_up() {
        // Two strings, one expiring in 10 minutes, one a bigger value.
        let now = 1_900_000_000_000i64;
        let mut rdb = b"REDIS0011\xfe\x00\xfc".to_vec();
        rdb.extend((now + 600_000).to_le_bytes());
        rdb.extend(b"\x00\x01a\x05hello\x00\x01b\x0aworldworld\xff");
        rdb.extend([0; 8]);
        let seen = inspect(&rdb[..], 1, now).await.unwrap();
        assert_eq!(seen.rdb_version, 11);
        assert_eq!(seen.keys[&0]["string"], 2);
        assert_eq!(seen.expiry.within_hour, 1);
        assert_eq!(seen.expiry.never, 1);
        assert_eq!(seen.biggest.len(), 1);
        assert_eq!(seen.biggest[0].key, "\"b\"");
        assert_eq!(seen.total_bytes, rdb.len() as u64);
    }
}
