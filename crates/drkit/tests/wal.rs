//! `drkit wal push` and `drkit wal fetch` keep the promises PostgreSQL's
//! `archive_command` and `restore_command` rely on: identical bytes written
//! atomically, a file not archived is a failure PostgreSQL reads as "not
//! available", pushing the same file again succeeds and different bytes
//! under an archived name never do; also from an S3 repository, with
//! credentials from the standard chain. (A real server archiving through
//! them, then restored, is in `cli.rs`.)

mod common;

use common::{PASSWORD, Setup, text};

/// A WAL segment's worth of bytes.
fn segment_bytes(seed: u32) -> Vec<u8> {
    (0..16u32 << 20).map(|i| ((i ^ seed) % 251) as u8).collect()
}

#[tokio::test]
async fn fetch_returns_the_bytes_pushed_and_refuses_what_would_lose_data() {
    // No server: WAL commands never connect to one.
    let setup = Setup::new(1, "unused", r#"{ rto = "30m", rpo = "0s" }"#);
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let dir = setup.dir.path();
    let name = "000000010000000000000003";
    let segment = dir.join(name);
    let bytes = segment_bytes(3);
    std::fs::write(&segment, &bytes).unwrap();
    let push = setup
        .drkit(&["wal", "push", segment.to_str().unwrap()])
        .await;
    assert!(push.status.success(), "{}", text(&push));

    // restore_command's view: identical bytes, and nothing else left beside them.
    let out = dir.join("pg_wal");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("RECOVERYXLOG");
    let fetch = setup
        .drkit(&["wal", "fetch", name, dest.to_str().unwrap()])
        .await;
    assert!(fetch.status.success(), "{}", text(&fetch));
    assert!(std::fs::read(&dest).unwrap() == bytes);
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["RECOVERYXLOG"]);

    // Not archived: exit 1 with one line, and no file.
    let missing = out.join("missing");
    let fetch = setup
        .drkit(&[
            "wal",
            "fetch",
            "0000000100000000000000FF",
            missing.to_str().unwrap(),
        ])
        .await;
    assert_eq!(fetch.status.code(), Some(1), "{}", text(&fetch));
    assert_eq!(String::from_utf8_lossy(&fetch.stderr).lines().count(), 1);
    assert!(!missing.exists());

    // The same file again is fine; other bytes under its name are not.
    let again = setup
        .drkit(&["wal", "push", segment.to_str().unwrap()])
        .await;
    assert!(again.status.success(), "{}", text(&again));
    let forged = dir.join("forged").join(name);
    std::fs::create_dir(forged.parent().unwrap()).unwrap();
    std::fs::write(&forged, segment_bytes(4)).unwrap();
    let push = setup
        .drkit(&["wal", "push", forged.to_str().unwrap()])
        .await;
    assert_eq!(push.status.code(), Some(1), "{}", text(&push));
    assert!(text(&push).contains("different content"), "{}", text(&push));

    // A segment of the wrong size is refused before anything is stored.
    let short = dir.join("000000010000000000000004");
    std::fs::write(&short, b"short").unwrap();
    let push = setup.drkit(&["wal", "push", short.to_str().unwrap()]).await;
    assert_eq!(push.status.code(), Some(1), "{}", text(&push));
    assert!(text(&push).contains("16777216"), "{}", text(&push));

    // A history file by its name, the password from a named variable.
    setup.set_repository(&format!(
        "[repository]\nlocation = \"{}\"\npassword = {{ env = \"DRKIT_TEST_REPO_PASSWORD\" }}",
        setup.repo.display()
    ));
    let env = [("DRKIT_TEST_REPO_PASSWORD", PASSWORD)];
    let history = dir.join("00000002.history");
    std::fs::write(&history, "1\t0/3000060\tno recovery target specified\n").unwrap();
    let push = setup
        .drkit_with(&["wal", "push", history.to_str().unwrap()], &env)
        .await;
    assert!(push.status.success(), "{}", text(&push));
    let dest = out.join("RECOVERYHISTORY");
    let fetch = setup
        .drkit_with(
            &["wal", "fetch", "00000002.history", dest.to_str().unwrap()],
            &env,
        )
        .await;
    assert!(fetch.status.success(), "{}", text(&fetch));
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&history).unwrap()
    );

    // A wrong password fails clearly, never as "not available" of a file.
    let wrong = [("DRKIT_TEST_REPO_PASSWORD", "guess")];
    let never = out.join("never");
    let fetch = setup
        .drkit_with(&["wal", "fetch", name, never.to_str().unwrap()], &wrong)
        .await;
    assert_eq!(fetch.status.code(), Some(1), "{}", text(&fetch));
    assert!(text(&fetch).contains("password"), "{}", text(&fetch));
    assert!(!never.exists());
}

#[tokio::test]
async fn an_s3_repository_is_named_in_the_config_and_reached_with_the_standard_chain() {
    let s3 = dr_testkit::S3::start().await.unwrap();
    let setup = Setup::new(1, "unused", r#"{ rto = "30m", rpo = "0s" }"#);
    setup.set_repository(&format!(
        "[repository]\nlocation = \"s3://{bucket}/wal\"\npassword = {{ file = \"{pass}\" }}\n\n\
         [repository.s3]\nregion = \"{region}\"\nendpoint = \"{endpoint}\"\npath_style = true",
        bucket = s3.bucket(),
        pass = setup.dir.path().join("repository.pass").display(),
        region = s3.region(),
        endpoint = s3.endpoint(),
    ));
    // Credentials come from the standard chain: here, the environment.
    let env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key_id()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key()),
    ];
    let init = setup.drkit_with(&["init"], &env).await;
    assert!(init.status.success(), "{}", text(&init));
    let name = "000000010000000000000001";
    let segment = setup.dir.path().join(name);
    let bytes = segment_bytes(1);
    std::fs::write(&segment, &bytes).unwrap();
    let push = setup
        .drkit_with(&["wal", "push", segment.to_str().unwrap()], &env)
        .await;
    assert!(push.status.success(), "{}", text(&push));
    let dest = setup.dir.path().join("RECOVERYXLOG");
    let fetch = setup
        .drkit_with(&["wal", "fetch", name, dest.to_str().unwrap()], &env)
        .await;
    assert!(fetch.status.success(), "{}", text(&fetch));
    assert!(std::fs::read(&dest).unwrap() == bytes);
}

#[tokio::test]
async fn the_segment_size_comes_from_the_config() {
    let setup = Setup::new(1, "unused", r#"{ rto = "30m", rpo = "0s" }"#);
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let config = std::fs::read_to_string(&setup.config).unwrap();
    let with_size = |size: &str| {
        config.replace(
            r#"tls = { mode = "disable" }"#,
            &format!("tls = {{ mode = \"disable\" }}\nwal_segment_size = \"{size}\""),
        )
    };
    // A 16 MiB segment of a cluster whose segments are 64 MiB is refused.
    std::fs::write(&setup.config, with_size("64MB")).unwrap();
    let segment = setup.dir.path().join("000000010000000000000001");
    std::fs::write(&segment, segment_bytes(1)).unwrap();
    let push = setup
        .drkit(&["wal", "push", segment.to_str().unwrap()])
        .await;
    assert_eq!(push.status.code(), Some(1), "{}", text(&push));
    assert!(text(&push).contains("67108864"), "{}", text(&push));
    // A size PostgreSQL does not allow is a config error naming the field.
    std::fs::write(&setup.config, with_size("3MB")).unwrap();
    let push = setup
        .drkit(&["wal", "push", segment.to_str().unwrap()])
        .await;
    assert_eq!(push.status.code(), Some(2), "{}", text(&push));
    assert!(text(&push).contains("wal_segment_size"), "{}", text(&push));
}
