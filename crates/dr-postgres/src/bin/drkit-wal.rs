//! `drkit-wal`: PostgreSQL's `archive_command` and `restore_command` for a
//! drkit repository, for deployments that archive WAL file by file instead
//! of streaming it with `WalArchiver`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use dr_core::{ArchiveSink, ComponentId, ErrorKind, JournalSource, SegmentName};
use dr_postgres::{ArchivedWal, DEFAULT_SEGMENT_SIZE, WalSegmentSize, fetch_wal};
use dr_storage::{FsBackend, Repository, S3Backend, S3Options, Secret, WriteBackend};
use tokio::io::AsyncWriteExt;

const HELP: &str = "\
drkit-wal: PostgreSQL WAL archive commands for a drkit repository

USAGE:
    drkit-wal push  --repo <REPO> --component <COMPONENT> [OPTIONS] <PATH>
    drkit-wal fetch --repo <REPO> --component <COMPONENT> [OPTIONS] <FILE> <DEST>

COMMANDS:
    push    Stores the WAL file at PATH (a segment, or a .history, .backup or
            .partial file) in the archive under its file name. Pushing the
            same file again succeeds; different content under an archived
            name fails. As PostgreSQL's archive_command:
              archive_command = 'drkit-wal push --repo /backups/drkit --component postgres/main --password-file /etc/drkit/password %p'
    fetch   Writes the archived file FILE to DEST, atomically (a temporary
            file in DEST's directory, then a rename). A segment that was
            streamed but not completed is assembled from its pieces and
            padded with zeros. As PostgreSQL's restore_command:
              restore_command = 'drkit-wal fetch --repo /backups/drkit --component postgres/main --password-file /etc/drkit/password %f %p'

OPTIONS:
    --repo <REPO>             The repository: a local directory, or s3://bucket/prefix
                              (region from AWS_REGION, default us-east-1; endpoint from
                              AWS_ENDPOINT_URL; credentials from the AWS environment,
                              profile or instance role).
    --component <COMPONENT>   The archive to use, such as postgres/main.
    --password-file <FILE>    A file holding the repository password (trailing newline
                              ignored). Without it, the DRKIT_PASSWORD environment
                              variable; an unencrypted repository needs neither.
    --segment-size <SIZE>     The cluster's WAL segment size, in bytes or with a kB,
                              MB or GB suffix (default 16MB).
    -h, --help                Prints this help.

EXIT STATUS:
    0   done
    1   fetch: the file is not in the archive (PostgreSQL: not available)
    2   invalid arguments
    3   any other failure (repository unreachable, wrong password, a
        different file already archived under the name); one line on stderr
";

/// What went wrong, and which exit status says so.
enum Failure {
    /// Exit 1: the file is not archived.
    NotArchived(String),
    /// Exit 2: the command line is wrong.
    Usage(String),
    /// Exit 3: anything else.
    Failed(String),
}

fn failed(context: impl std::fmt::Display, error: &dyn std::error::Error) -> Failure {
    let mut message = format!("{context}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Failure::Failed(message)
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Push {
        common: Common,
        path: PathBuf,
    },
    Fetch {
        common: Common,
        file: String,
        dest: PathBuf,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Common {
    repo: String,
    component: ComponentId,
    password_file: Option<PathBuf>,
    segment_size: WalSegmentSize,
}

fn parse_args(args: Vec<OsString>) -> Result<Command, Failure> {
    let usage = |m: String| Failure::Usage(format!("{m} (see drkit-wal --help)"));
    let mut args = args.into_iter();
    let mut command = None;
    let mut repo = None;
    let mut component = None;
    let mut password_file = None;
    let mut segment_size = DEFAULT_SEGMENT_SIZE;
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        let text = arg.to_str().map(str::to_owned);
        let (flag, inline) = match text.as_deref() {
            Some(t) if t.starts_with("--") => match t.split_once('=') {
                Some((f, v)) => (Some(f.to_owned()), Some(OsString::from(v))),
                None => (Some(t.to_owned()), None),
            },
            Some(t) if t.starts_with('-') && t.len() > 1 => (Some(t.to_owned()), None),
            _ => (None, None),
        };
        let Some(flag) = flag else {
            if command.is_none() {
                match text.as_deref() {
                    Some("push" | "fetch") => command = text,
                    Some("help") => return Ok(Command::Help),
                    _ => return Err(usage(format!("unknown command {arg:?}"))),
                }
            } else {
                positional.push(arg);
            }
            continue;
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--repo" => {
                let v = value()?;
                repo = Some(
                    v.into_string()
                        .map_err(|v| usage(format!("--repo {v:?} is not UTF-8")))?,
                );
            }
            "--component" => {
                let v = value()?;
                let text = v.to_string_lossy().into_owned();
                component = Some(
                    text.parse::<ComponentId>()
                        .map_err(|e| usage(format!("--component: {e}")))?,
                );
            }
            "--password-file" => password_file = Some(PathBuf::from(value()?)),
            "--segment-size" => {
                let v = value()?;
                let text = v.to_string_lossy();
                segment_size = text
                    .parse::<WalSegmentSize>()
                    .map_err(|e| usage(format!("--segment-size: {e}")))?;
            }
            other => return Err(usage(format!("unknown option {other}"))),
        }
    }
    let Some(command) = command else {
        return Err(usage("no command given: push or fetch".into()));
    };
    let common = Common {
        repo: repo.ok_or_else(|| usage("--repo is required".into()))?,
        component: component.ok_or_else(|| usage("--component is required".into()))?,
        password_file,
        segment_size,
    };
    match (command.as_str(), positional.as_slice()) {
        ("push", [path]) => Ok(Command::Push {
            common,
            path: PathBuf::from(path),
        }),
        ("push", _) => Err(usage("push takes one path".into())),
        ("fetch", [file, dest]) => Ok(Command::Fetch {
            common,
            file: file
                .to_str()
                .ok_or_else(|| usage(format!("file name {file:?} is not UTF-8")))?
                .to_owned(),
            dest: PathBuf::from(dest),
        }),
        _ => Err(usage(
            "fetch takes a file name and a destination path".into(),
        )),
    }
}

/// The repository password: the file's first line, else `DRKIT_PASSWORD`.
fn secret(common: &Common) -> Result<Option<Secret>, Failure> {
    if let Some(path) = &common.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| failed(format!("reading the password file {}", path.display()), &e))?;
        let password = text.trim_end_matches(['\n', '\r']);
        return Ok(Some(Secret::password(password)));
    }
    Ok(std::env::var("DRKIT_PASSWORD").ok().map(Secret::password))
}

/// How a command opens the repository: fetch only reads, so it writes
/// nothing (not even the open's create-only probe) and works with
/// credentials that may only read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

async fn open_repository(common: &Common, access: Access) -> Result<Repository, Failure> {
    let backend: Arc<dyn WriteBackend> = if let Some(rest) = common.repo.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        let mut options = S3Options::new(bucket, region).prefix(prefix);
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            options = options.endpoint(endpoint);
        }
        Arc::new(
            S3Backend::new(options)
                .await
                .map_err(|e| failed(format!("repository {}", common.repo), &e))?,
        )
    } else {
        let dir = Path::new(&common.repo);
        if !dir.is_dir() {
            return Err(Failure::Failed(format!(
                "there is no repository directory {}",
                dir.display()
            )));
        }
        Arc::new(
            FsBackend::new(dir).map_err(|e| failed(format!("repository {}", common.repo), &e))?,
        )
    };
    let secret = secret(common)?;
    let opened = match access {
        Access::ReadWrite => Repository::open(backend, secret.as_ref()).await,
        Access::ReadOnly => Repository::open_read_only(backend, secret.as_ref()).await,
    };
    match opened {
        Ok(repo) => Ok(repo),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Failure::Failed(format!(
            "there is no drkit repository at {} (no config object)",
            common.repo
        ))),
        Err(e) => Err(failed(
            format!("opening the repository {}", common.repo),
            &e,
        )),
    }
}

async fn push(common: &Common, path: &Path) -> Result<(), Failure> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::Usage(format!("{} has no file name", path.display())))?;
    let name: SegmentName = file_name.parse().map_err(|e| {
        Failure::Usage(format!(
            "{file_name:?} cannot be stored in the archive: {e}"
        ))
    })?;
    let size = common.segment_size;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| failed(format!("opening {}", path.display()), &e))?;
    if let Some(ArchivedWal::Segment(_)) = ArchivedWal::parse(file_name, size) {
        let len = file
            .metadata()
            .await
            .map_err(|e| failed(format!("reading {}", path.display()), &e))?
            .len();
        if len != size.bytes() {
            return Err(Failure::Failed(format!(
                "{} has {len} bytes, but WAL segments have {} (--segment-size)",
                path.display(),
                size.bytes()
            )));
        }
    }
    let repo = open_repository(common, Access::ReadWrite).await?;
    match repo.put_segment(&common.component, &name, &mut file).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Failure::Failed(format!(
            "{name} is already archived in {} with different content; not overwriting it",
            common.component
        ))),
        Err(e) => Err(failed(format!("archiving {name}"), &e)),
    }
}

async fn fetch(common: &Common, file: &str, dest: &Path) -> Result<(), Failure> {
    let repo = open_repository(common, Access::ReadOnly).await?;
    // A directory's archive may hold its newest WAL in segment journals.
    let journals = repo.segment_journals();
    let journals = journals.as_ref().map(|j| j as &dyn JournalSource);
    let data = match fetch_wal(
        &repo,
        journals,
        &common.component,
        file,
        common.segment_size,
    )
    .await
    {
        Ok(Some(data)) => data,
        Ok(None) => {
            return Err(Failure::NotArchived(format!(
                "{file} is not in the archive of {}",
                common.component
            )));
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            return Err(Failure::Usage(format!("{file:?}: {e}")));
        }
        Err(e) => return Err(failed(format!("fetching {file}"), &e)),
    };
    write_atomically(dest, &data)
        .await
        .map_err(|e| failed(format!("writing {}", dest.display()), &e))
}

/// Writes `data` to a temporary file beside `dest`, then renames it over
/// `dest`: PostgreSQL sees the whole file or none.
async fn write_atomically(dest: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = dest
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".drkit-wal-{}.tmp", std::process::id()));
    let temp = dest.with_file_name(temp_name);
    let result = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        file.write_all(data).await?;
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&temp, dest).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(command) => command,
        Err(failure) => return report(failure),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(failed("starting the async runtime", &e)),
    };
    let result = runtime.block_on(async {
        match &command {
            Command::Help => {
                print!("{HELP}");
                Ok(())
            }
            Command::Push { common, path } => push(common, path).await,
            Command::Fetch { common, file, dest } => fetch(common, file, dest).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(failure),
    }
}

fn report(failure: Failure) -> ExitCode {
    let (code, message) = match failure {
        Failure::NotArchived(m) => (1, m),
        Failure::Usage(m) => (2, m),
        Failure::Failed(m) => (3, m),
    };
    eprintln!("drkit-wal: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn commands_parse() {
        let push = parse_args(args(&[
            "push",
            "--repo",
            "/r",
            "--component=postgres/main",
            "--segment-size",
            "64MB",
            "pg_wal/000000010000000000000001",
        ]));
        let Ok(Command::Push { common, path }) = push else {
            panic!("not a push");
        };
        assert_eq!(common.repo, "/r");
        assert_eq!(common.component.as_str(), "postgres/main");
        assert_eq!(common.segment_size.bytes(), 64 << 20);
        assert_eq!(path, PathBuf::from("pg_wal/000000010000000000000001"));

        let fetch = parse_args(args(&[
            "fetch",
            "--repo",
            "s3://b/p",
            "--component",
            "postgres/main",
            "--password-file",
            "/pw",
            "00000002.history",
            "pg_wal/RECOVERYHISTORY",
        ]));
        assert!(matches!(fetch, Ok(Command::Fetch { ref file, .. }) if file == "00000002.history"));
        assert!(matches!(parse_args(args(&["--help"])), Ok(Command::Help)));
        assert!(matches!(
            parse_args(args(&["push", "-h"])),
            Ok(Command::Help)
        ));
        for bad in [
            &[][..],
            &["archive"][..],
            &["push", "--repo", "/r", "x"][..],
            &["push", "--repo", "/r", "--component", "pg/x"][..],
            &["fetch", "--repo", "/r", "--component", "pg/x", "f"][..],
            &[
                "push",
                "--repo",
                "/r",
                "--component",
                "pg/x",
                "--segment-size",
                "3MB",
                "f",
            ][..],
            &[
                "push",
                "--repo",
                "/r",
                "--component",
                "pg/x",
                "--bogus",
                "f",
            ][..],
            &["push", "--repo"][..],
        ] {
            assert!(
                matches!(parse_args(args(bad)), Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn segment_sizes_parse() {
        for (text, bytes) in [("16MB", 16 << 20), ("16777216", 16 << 20), ("1GB", 1 << 30)] {
            assert_eq!(text.parse::<WalSegmentSize>().unwrap().bytes(), bytes);
        }
        for bad in ["lots", "3MB", "2GB", "512kB"] {
            assert!(bad.parse::<WalSegmentSize>().is_err(), "{bad}");
        }
    }
}
