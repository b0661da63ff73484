//! Checking a stored base backup against its own backup manifest without
//! restoring it: every file the manifest lists is in the archives with its
//! size and checksum (CRC-32C or SHA-2, whichever the server computed),
//! nothing else is, and the manifest's own checksum holds.
//! (`pg_verifybackup`, reading from the repository instead of a directory.)
//! A delta backup is checked as the restore would rebuild it, against its
//! full backup.

use std::collections::{BTreeMap, HashSet};

use dr_core::{
    ComponentId, Finding, Manifest, Problem, SnapshotId, SnapshotSource, SnapshotSourceExt,
    StreamCheck, StreamName, Timeline, VerificationReport, Verify, async_trait,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::backup::MANIFEST_STREAM;
use crate::delta::{DELTA_STREAM, DeltaBase, open_archive};
use crate::details::BaseBackupDetails;
use crate::tar::{EntryKind, TarReader};

/// Checks PostgreSQL base backups stored by [`BaseBackup`](crate::BaseBackup)
/// without restoring them ([`verify_base_backup`] as dr-core's [`Verify`]).
#[derive(Debug, Clone)]
pub struct BaseBackupVerifier {
    component: ComponentId,
}

impl BaseBackupVerifier {
    /// A verifier of `component`'s base backups.
    pub fn new(component: ComponentId) -> Self {
        Self { component }
    }
}

#[async_trait]
impl Verify for BaseBackupVerifier {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    async fn verify(
        &self,
        source: &dyn SnapshotSource,
        snapshot: &SnapshotId,
    ) -> dr_core::Result<VerificationReport> {
        check_component(source, snapshot, &self.component).await?;
        verify_base_backup(source, snapshot).await
    }
}

/// Fails unless `snapshot` of `source` is one of `component`'s: a
/// verifier checks only its own component's snapshots.
pub(crate) async fn check_component(
    source: &dyn SnapshotSource,
    snapshot: &SnapshotId,
    component: &ComponentId,
) -> dr_core::Result<()> {
    let manifest = source.manifest(snapshot).await?;
    if manifest.component != *component {
        return Err(dr_core::Error::invalid(
            format!("snapshot {snapshot}"),
            format!(
                "it is a snapshot of {}, not of {component}",
                manifest.component
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct BackupManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u32,
    #[serde(rename = "Files")]
    files: Vec<ManifestFile>,
    #[serde(rename = "Manifest-Checksum")]
    checksum: String,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

impl ManifestFile {
    /// The file's path in the data directory: `Path`, or `Encoded-Path`
    /// decoded (left as the hex if it is not UTF-8).
    fn path(&self) -> Option<String> {
        self.path.clone().or_else(|| {
            let hex = self.encoded_path.as_ref()?;
            Some(decode_hex_path(hex).unwrap_or_else(|| hex.clone()))
        })
    }
}

struct Expected {
    size: u64,
    checksum: Option<(Algorithm, String)>,
    seen: bool,
}

/// The files a base backup's backup manifest lists, checked off as the
/// backup's archives are read: by [`verify_base_backup`], and by the restore
/// as it writes them.
pub(crate) struct ManifestFiles {
    expected: BTreeMap<String, Expected>,
    /// Every difference from the manifest found so far, by file.
    pub(crate) problems: Vec<Finding>,
    /// Files whose size and checksum matched.
    pub(crate) files_ok: usize,
    /// Bytes of the files read.
    pub(crate) bytes: u64,
    /// Every file listed has a checksum this check computes.
    all_checksummed: bool,
}

/// One file being read: its size and checksum so far.
pub(crate) struct FileCheck {
    path: String,
    size: u64,
    hasher: Option<Hasher>,
}

impl FileCheck {
    /// Takes in the file's next bytes.
    pub(crate) fn update(&mut self, data: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
    }
}

impl ManifestFiles {
    /// Reads the backup manifest of base backup `id` (its own checksum
    /// checked: a mismatch is a problem), and returns the files it lists
    /// and its bytes.
    ///
    /// # Errors
    /// The manifest cannot be read, or is not a backup manifest.
    pub(crate) async fn read(
        source: &dyn SnapshotSource,
        id: &SnapshotId,
    ) -> dr_core::Result<(Self, Vec<u8>)> {
        let mut problems = Vec::new();
        let (manifest, raw) = read_manifest(source, id, &mut problems).await?;
        let mut files = Self {
            expected: BTreeMap::new(),
            problems,
            files_ok: 0,
            bytes: 0,
            all_checksummed: true,
        };
        for file in manifest.files {
            let Some(path) = file.path() else {
                files.problem(
                    MANIFEST_STREAM,
                    Problem::Malformed {
                        reason: "an entry without a path".into(),
                    },
                );
                continue;
            };
            let checksum = match (file.algorithm.as_deref(), file.checksum) {
                (None | Some("NONE"), _) | (_, None) => None,
                (Some(name), Some(value)) => match Algorithm::from_manifest(name) {
                    Some(algorithm) => Some((algorithm, value)),
                    None => {
                        files.problem(
                            &path,
                            Problem::Unchecked {
                                reason: format!(
                                    "checksum algorithm {name} is not one this check knows"
                                ),
                            },
                        );
                        None
                    }
                },
            };
            files.all_checksummed &= checksum.is_some();
            files.expected.insert(
                path,
                Expected {
                    size: file.size,
                    checksum,
                    seen: false,
                },
            );
        }
        Ok((files, raw))
    }

    /// Whether reading every file checks every byte of every file against
    /// the manifest: each has a checksum this check computes, and the
    /// manifest's own checksum held.
    pub(crate) fn checks_every_byte(&self) -> bool {
        self.all_checksummed && self.problems.is_empty()
    }

    /// Starts the check of the file at `path` (in the data directory) of
    /// `size` bytes, found in archive `archive`.
    pub(crate) fn start(&mut self, path: String, size: u64, archive: &str) -> FileCheck {
        self.bytes += size;
        let hasher = match self.expected.get_mut(&path) {
            Some(file) => {
                file.seen = true;
                file.checksum
                    .as_ref()
                    .map(|(algorithm, _)| algorithm.hasher())
            }
            None => {
                let within = Some(archive.to_owned());
                self.problem(&path, Problem::Unrecorded { within });
                None
            }
        };
        FileCheck { path, size, hasher }
    }

    /// Ends the check of a file: its size and checksum against the manifest.
    pub(crate) fn finish(&mut self, check: FileCheck) {
        let FileCheck { path, size, hasher } = check;
        let Some(file) = self.expected.get(&path) else {
            return;
        };
        if file.size != size {
            let problem = Problem::WrongSize {
                expected: file.size,
                found: size,
            };
            self.problem(&path, problem);
        } else if let (Some(hasher), Some((algorithm, want))) = (hasher, &file.checksum) {
            if hasher.matches(want) {
                self.files_ok += 1;
            } else {
                let algorithm = format!("{algorithm:?}").to_uppercase();
                self.problem(&path, Problem::ChecksumMismatch { algorithm });
            }
        } else {
            self.files_ok += 1;
        }
    }

    /// Ends the check of the whole backup: every file listed must have been
    /// read.
    pub(crate) fn finish_all(&mut self) {
        let missing: Vec<String> = self
            .expected
            .iter()
            .filter(|(_, file)| !file.seen)
            .map(|(path, _)| path.clone())
            .collect();
        for path in missing {
            self.problem(&path, Problem::Missing);
        }
    }

    /// Notes a difference from the manifest.
    pub(crate) fn problem(&mut self, object: &str, problem: Problem) {
        self.problems.push(Finding::new(object, problem));
    }

    /// Where the files of archive `name` of `snapshot` sit in the data
    /// directory: `""` for `base.tar`, `pg_tblspc/<oid>/` for a tablespace's;
    /// `None` for an archive the backup does not describe.
    pub(crate) fn prefix_of(snapshot: &Manifest, name: &str) -> Option<String> {
        if name == "base.tar" {
            return Some(String::new());
        }
        tablespace_prefixes(snapshot)
            .get(name)
            .map(|oid| format!("pg_tblspc/{oid}/"))
    }
}

/// The file checksums this check computes, as the manifest names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn from_manifest(name: &str) -> Option<Self> {
        Some(match name {
            "CRC32C" => Self::Crc32c,
            "SHA224" => Self::Sha224,
            "SHA256" => Self::Sha256,
            "SHA384" => Self::Sha384,
            "SHA512" => Self::Sha512,
            _ => return None,
        })
    }

    fn hasher(self) -> Hasher {
        match self {
            Self::Crc32c => Hasher::Crc32c(0),
            Self::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
            Self::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Self::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// A running file checksum.
enum Hasher {
    Crc32c(u32),
    Sha224(sha2::Sha224),
    Sha256(Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            Self::Sha224(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// Whether the result matches the manifest's hex. The server writes a
    /// CRC-32C in its own byte order, so either order matches.
    fn matches(self, want: &str) -> bool {
        let same = |bytes: &[u8]| hex(bytes).eq_ignore_ascii_case(want);
        match self {
            Self::Crc32c(crc) => same(&crc.to_le_bytes()) || same(&crc.to_be_bytes()),
            Self::Sha224(h) => same(&h.finalize()),
            Self::Sha256(h) => same(&h.finalize()),
            Self::Sha384(h) => same(&h.finalize()),
            Self::Sha512(h) => same(&h.finalize()),
        }
    }
}

/// Reads the base backup `id` from `source` (through the repository's own
/// integrity checks) and checks it against its backup manifest: the
/// report's `checked` counts the files that matched, and its timeline has
/// a step for reading the manifest and one for each archive.
///
/// # Errors
/// The snapshot or a stream cannot be read (not found, damaged in the
/// repository), or the manifest is unreadable. Differences from the
/// manifest are not errors: they are listed in the result.
pub async fn verify_base_backup(
    source: &dyn SnapshotSource,
    id: &SnapshotId,
) -> dr_core::Result<VerificationReport> {
    let mut timeline = Timeline::start_now();
    let snapshot = source.manifest(id).await?;
    let (mut files, delta) = timeline
        .step("read the backup manifest", async {
            let (files, _) = ManifestFiles::read(source, id).await?;
            let delta = DeltaBase::of(source, &snapshot).await?;
            Ok::<_, dr_core::Error>((files, delta))
        })
        .await?;
    for entry in &snapshot.streams {
        let name = entry.name.as_str();
        if name == MANIFEST_STREAM || name == DELTA_STREAM {
            continue;
        }
        let Some(prefix) = ManifestFiles::prefix_of(&snapshot, name) else {
            files.problem(name, Problem::Unrecorded { within: None });
            continue;
        };
        timeline
            .step(format!("check {name}"), async {
                let stream = open_archive(
                    source,
                    &snapshot,
                    delta.as_ref(),
                    &entry.name,
                    StreamCheck::Digest,
                )
                .await?;
                check_archive(stream, name, &prefix, &mut files).await
            })
            .await?;
    }
    files.finish_all();
    Ok(VerificationReport {
        snapshot: *id,
        checked: files.files_ok as u64,
        bytes: files.bytes,
        findings: files.problems,
        timeline,
    })
}

/// The files the base backup `snapshot`'s backup manifest lists, by the
/// archive that holds them (archive name → paths inside it).
///
/// # Errors
/// The manifest cannot be read, or is not a backup manifest.
pub(crate) async fn archived_files(
    source: &dyn SnapshotSource,
    snapshot: &Manifest,
) -> dr_core::Result<BTreeMap<String, HashSet<String>>> {
    let (manifest, _) = read_manifest(source, &snapshot.id, &mut Vec::new()).await?;
    let archives: BTreeMap<String, String> = tablespace_prefixes(snapshot)
        .into_iter()
        .map(|(archive, oid)| (format!("pg_tblspc/{oid}/"), archive))
        .collect();
    let mut files: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for file in manifest.files {
        let Some(path) = file.path() else {
            continue;
        };
        let (archive, inside) = archives
            .iter()
            .find_map(|(prefix, archive)| Some((archive.as_str(), path.strip_prefix(prefix)?)))
            .unwrap_or(("base.tar", path.as_str()));
        files
            .entry(archive.to_owned())
            .or_default()
            .insert(inside.to_owned());
    }
    Ok(files)
}

/// Reads and parses the backup manifest of base backup `id`, and returns it
/// with its bytes; a manifest whose own checksum fails is a problem, not an
/// error.
async fn read_manifest(
    source: &dyn SnapshotSource,
    id: &SnapshotId,
    problems: &mut Vec<Finding>,
) -> dr_core::Result<(BackupManifest, Vec<u8>)> {
    let mut raw = Vec::new();
    let stream: StreamName = MANIFEST_STREAM.parse()?;
    source
        .open_stream(id, &stream)
        .await?
        .read_to_end(&mut raw)
        .await
        .map_err(|e| dr_core::Error::io(format!("reading the manifest of {id}"), e))?;
    let manifest = parse_manifest(&raw, problems)
        .map_err(|reason| dr_core::Error::corrupt(format!("backup manifest of {id}"), reason))?;
    Ok((manifest, raw))
}

/// Tablespace archive name (`<oid>.tar`) → oid, from the snapshot's metadata.
fn tablespace_prefixes(snapshot: &Manifest) -> BTreeMap<String, String> {
    let recorded = BaseBackupDetails::of(snapshot)
        .map(|details| details.tablespaces)
        .unwrap_or_default();
    recorded
        .into_keys()
        .filter_map(|name| {
            let oid = name.strip_suffix(".tar")?.to_owned();
            Some((name, oid))
        })
        .collect()
}

async fn check_archive(
    stream: impl AsyncRead + Unpin,
    name: &str,
    prefix: &str,
    files: &mut ManifestFiles,
) -> dr_core::Result<()> {
    let io = |e: std::io::Error| dr_core::Error::io(format!("reading {name}"), e);
    let mut tar = TarReader::new(stream, name);
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(entry) = tar.next_entry().await.map_err(io)? {
        if entry.kind != EntryKind::File {
            continue;
        }
        let mut file = files.start(format!("{prefix}{}", entry.path), entry.size, name);
        let mut content = tar.content();
        loop {
            let n = content.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            file.update(&buf[..n]);
        }
        files.finish(file);
    }
    tar.finish().await.map_err(io)
}

/// Parses the manifest and checks its own checksum (SHA-256 of everything
/// before its last line).
fn parse_manifest(raw: &[u8], problems: &mut Vec<Finding>) -> Result<BackupManifest, String> {
    let manifest: BackupManifest =
        serde_json::from_slice(raw).map_err(|e| format!("not a backup manifest: {e}"))?;
    if manifest.version != 1 {
        return Err(format!(
            "manifest version {} (this build reads version 1)",
            manifest.version
        ));
    }
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    let covered = match body.iter().rposition(|b| *b == b'\n') {
        Some(last_newline) => &raw[..=last_newline],
        None => return Err("a manifest on one line has no checksummed part".into()),
    };
    if !hex(&Sha256::digest(covered)).eq_ignore_ascii_case(&manifest.checksum) {
        problems.push(Finding::new(
            MANIFEST_STREAM,
            Problem::ChecksumMismatch {
                algorithm: "SHA256 (Manifest-Checksum)".into(),
            },
        ));
    }
    Ok(manifest)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn decode_hex_path(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(algorithm: &str, data: &[u8], want: &str) -> bool {
        let mut hasher = Algorithm::from_manifest(algorithm).unwrap().hasher();
        hasher.update(&data[..3]);
        hasher.update(&data[3..]);
        hasher.matches(want)
    }

    #[test]
    fn checksums_match_as_the_server_writes_them() {
        // CRC-32C("123456789") is 0xE3069283; the server writes its bytes in
        // its own order.
        assert!(checked("CRC32C", b"123456789", "839206e3"));
        assert!(checked("CRC32C", b"123456789", "E3069283"));
        assert!(!checked("CRC32C", b"123456780", "839206e3"));
        let sha = "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225";
        assert!(checked("SHA256", b"123456789", sha));
        assert!(!checked("SHA224", b"123456789", sha));
        assert_eq!(Algorithm::from_manifest("MD5"), None);
    }

    #[test]
    fn differences_from_the_manifest_are_typed_findings() {
        let expect = |size, checksum: Option<&str>| Expected {
            size,
            checksum: checksum.map(|c| (Algorithm::Crc32c, c.to_owned())),
            seen: false,
        };
        let mut files = ManifestFiles {
            expected: BTreeMap::from([
                ("ok".to_owned(), expect(9, Some("839206e3"))),
                ("damaged".to_owned(), expect(9, Some("839206e3"))),
                ("short".to_owned(), expect(5, None)),
                ("gone".to_owned(), expect(1, None)),
            ]),
            problems: Vec::new(),
            files_ok: 0,
            bytes: 0,
            all_checksummed: true,
        };
        for (path, data) in [
            ("ok", &b"123456789"[..]),
            ("damaged", b"123456780"),
            ("short", b"abc"),
            ("stray", b"x"),
        ] {
            let mut check = files.start(path.to_owned(), data.len() as u64, "base.tar");
            check.update(data);
            files.finish(check);
        }
        files.finish_all();
        assert_eq!(files.files_ok, 1);
        let found: Vec<(&str, &Problem)> = files
            .problems
            .iter()
            .map(|f| (f.object.as_str(), &f.problem))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "damaged",
                    &Problem::ChecksumMismatch {
                        algorithm: "CRC32C".into()
                    }
                ),
                (
                    "short",
                    &Problem::WrongSize {
                        expected: 5,
                        found: 3
                    }
                ),
                (
                    "stray",
                    &Problem::Unrecorded {
                        within: Some("base.tar".into())
                    }
                ),
                ("gone", &Problem::Missing),
            ]
        );
        assert_eq!(
            files.problems[1].to_string(),
            "short: 3 bytes, the record says 5"
        );
    }
}
