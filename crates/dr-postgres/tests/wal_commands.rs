//! `drkit-wal` as PostgreSQL's `archive_command` and `restore_command`:
//! a real server archiving through it, fetches byte for byte, the exit
//! statuses PostgreSQL relies on, and an S3 repository.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::{ArchiveSource, ComponentId, SegmentName};
use dr_storage::{
    FsBackend, InitOptions, KdfParams, Repository, S3Backend, S3Options, Secret, WriteBackend,
};
use dr_testkit::Postgres;

const BIN: &str = env!("CARGO_BIN_EXE_drkit-wal");
const PASSWORD: &str = "wal-archive-password";
const COMPONENT: &str = "postgres/archived";

async fn init(backend: Arc<dyn WriteBackend>) -> Repository {
    let options = InitOptions::encrypted(Secret::password(PASSWORD)).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

/// Gives a directory tree to the user the server runs as (the tests run as
/// root, the server as `postgres`).
fn give_tree(owner: (u32, u32), path: &Path) {
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            give_tree(owner, &entry.unwrap().path());
        }
    }
}

fn owner_of(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args).env_remove("DRKIT_PASSWORD");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A repository directory and a password file the server's user can use.
struct Setup {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    password_file: PathBuf,
}

async fn setup(owner: (u32, u32)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = dir.path().join("repo");
    init(Arc::new(FsBackend::new(&repo).unwrap())).await;
    std::fs::set_permissions(&repo, std::fs::Permissions::from_mode(0o777)).unwrap();
    give_tree(owner, &repo);
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    give_tree(owner, &password_file);
    Setup {
        _dir: dir,
        repo,
        password_file,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_archives_and_restores_through_drkit_wal() {
    // The server runs as `postgres` when the tests run as root: the
    // repository and the password file are given to that user, then
    // archiving is switched on.
    let mut pg = Postgres::start().await.unwrap();
    let setup = setup(owner_of(&pg.data_dir())).await;
    let repo = setup.repo.to_str().unwrap().to_owned();
    let password_file = setup.password_file.to_str().unwrap().to_owned();
    let archive_command = format!(
        "{BIN} push --repo {repo} --component {COMPONENT} --password-file {password_file} %p"
    );
    let control = pg.connect("postgres").await.unwrap();
    control
        .batch_execute("ALTER SYSTEM SET archive_mode = on")
        .await
        .unwrap();
    control
        .execute(
            &format!(
                "ALTER SYSTEM SET archive_command = '{}'",
                archive_command.replace('\'', "''")
            ),
            &[],
        )
        .await
        .unwrap();
    drop(control);
    pg.restart().await.unwrap();

    let control = pg.connect("postgres").await.unwrap();
    control
        .batch_execute("CREATE TABLE t (id int, pad text)")
        .await
        .unwrap();
    let mut switched = Vec::new();
    for round in 0..3 {
        control
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, repeat('w', 200) FROM generate_series(1, {}) g",
                1000 * (round + 1)
            ))
            .await
            .unwrap();
        let name: String = control
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await
            .unwrap()
            .get(0);
        switched.push(name);
    }
    let last = switched.last().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = control
            .query_one(
                "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal \
                 FROM pg_stat_archiver",
                &[],
            )
            .await
            .unwrap();
        let failed: i64 = row.get(2);
        assert_eq!(
            failed,
            0,
            "archiving failed for {:?}: {}",
            row.get::<_, Option<String>>(3),
            pg.log()
        );
        if row.get::<_, Option<String>>(1).as_deref() == Some(last.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "{last} was not archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The segments are in the repository under their names.
    let repository = Repository::open(
        Arc::new(FsBackend::new(&setup.repo).unwrap()),
        Some(&Secret::password(PASSWORD)),
    )
    .await
    .unwrap();
    let component: ComponentId = COMPONENT.parse().unwrap();
    let stored: Vec<SegmentName> = repository.segments(&component, "").await.unwrap();
    for name in &switched {
        assert!(
            stored.iter().any(|s| s.as_str() == name),
            "{name} not in {stored:?}"
        );
    }

    // restore_command's view: identical bytes, written atomically.
    let out = tempfile::tempdir().unwrap();
    let common = [
        "--repo",
        repo.as_str(),
        "--component",
        COMPONENT,
        "--password-file",
        password_file.as_str(),
    ];
    for name in &switched {
        let dest = out.path().join("RECOVERYXLOG");
        let mut args = vec!["fetch"];
        args.extend(common);
        args.extend([name.as_str(), dest.to_str().unwrap()]);
        let output = run(&args, &[]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        let on_disk = std::fs::read(pg.data_dir().join("pg_wal").join(name)).unwrap();
        assert!(std::fs::read(&dest).unwrap() == on_disk, "{name} differs");
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["RECOVERYXLOG"]);

    // Not archived: exit 1 and one line, which PostgreSQL takes as "not available".
    let dest = out.path().join("missing");
    let mut args = vec!["fetch"];
    args.extend(common);
    args.extend(["0000000100000000000000FF", dest.to_str().unwrap()]);
    let output = run(&args, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    assert!(!dest.exists());

    // Pushing an archived segment again is fine; other bytes under its name are not.
    let first = pg.data_dir().join("pg_wal").join(&switched[0]);
    let mut args = vec!["push"];
    args.extend(common);
    args.push(first.to_str().unwrap());
    let output = run(&args, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let forged = out.path().join(&switched[0]);
    std::fs::write(&forged, vec![7u8; 16 << 20]).unwrap();
    let mut args = vec!["push"];
    args.extend(common);
    args.push(forged.to_str().unwrap());
    let output = run(&args, &[]).await;
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("different content"),
        "{}",
        stderr(&output)
    );

    // A wrong password is a clear failure, never "not available".
    let wrong = out.path().join("wrong-password");
    std::fs::write(&wrong, "guess\n").unwrap();
    let dest = out.path().join("never");
    let output = run(
        &[
            "fetch",
            "--repo",
            &repo,
            "--component",
            COMPONENT,
            "--password-file",
            wrong.to_str().unwrap(),
            &switched[0],
            dest.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("wrong password"),
        "{}",
        stderr(&output)
    );
    assert!(!dest.exists());

    // The password from the environment; a history file by its name.
    let history = out.path().join("00000002.history");
    std::fs::write(&history, "1\t0/3000060\tno recovery target specified\n").unwrap();
    let env = [("DRKIT_PASSWORD", PASSWORD)];
    let output = run(
        &[
            "push",
            "--repo",
            &repo,
            "--component",
            COMPONENT,
            history.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let dest = out.path().join("RECOVERYHISTORY");
    let output = run(
        &[
            "fetch",
            "--repo",
            &repo,
            "--component",
            COMPONENT,
            "00000002.history",
            dest.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&history).unwrap()
    );

    // Usage errors are exit 2; --help is not an error.
    let output = run(&["push", "--repo", &repo], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let output = run(&["--help"], &[]).await;
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("restore_command"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_repository_is_used_from_the_environment() {
    let s3 = dr_testkit::S3::start().await.unwrap();
    let options = S3Options::new(s3.bucket(), s3.region())
        .endpoint(s3.endpoint())
        .static_credentials(s3.access_key_id(), s3.secret_access_key())
        .prefix("wal");
    init(Arc::new(S3Backend::new(options).await.unwrap())).await;

    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("000000010000000000000001");
    let bytes: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(&segment, &bytes).unwrap();
    let repo = format!("s3://{}/wal", s3.bucket());
    let endpoint = s3.endpoint();
    let env = [
        ("DRKIT_PASSWORD", PASSWORD),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", s3.region()),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key()),
    ];
    let output = run(
        &[
            "push",
            "--repo",
            &repo,
            "--component",
            COMPONENT,
            segment.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let dest = dir.path().join("RECOVERYXLOG");
    let output = run(
        &[
            "fetch",
            "--repo",
            &repo,
            "--component",
            COMPONENT,
            "000000010000000000000001",
            dest.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::read(&dest).unwrap() == bytes);

    // A segment of the wrong size is refused before anything is stored.
    let short = dir.path().join("000000010000000000000002");
    std::fs::write(&short, b"short").unwrap();
    let output = run(
        &[
            "push",
            "--repo",
            &repo,
            "--component",
            COMPONENT,
            short.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("16777216"), "{}", stderr(&output));
}
