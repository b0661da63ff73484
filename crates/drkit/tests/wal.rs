//! `drkit wal push` and `drkit wal fetch` keep the promises PostgreSQL's
//! `archive_command` and `restore_command` rely on: identical bytes written
//! atomically, a file not archived is a failure PostgreSQL reads as "not
//! available", pushing the same file again succeeds and different bytes
//! under an archived name never do; also from an S3 repository, with
//! credentials from the standard chain. (A real server archiving through
//! them, then restored, is in `cli.rs`.)

use crate::common::{PASSWORD, Setup, text};

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
    // Credentials come from the standard chain: here, the environment.
    let env = setup.use_s3(&s3, "wal");
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

/// The files in `dir`, sorted.
fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn pushes_take_the_key_from_the_cache_and_a_wrong_password_still_fails() {
    let setup = Setup::new(1, "unused", r#"{ rto = "30m", rpo = "0s" }"#);
    let dir = setup.dir.path();
    let cache = dir.join("key-cache");
    let password_file = dir.join("repository.pass");
    setup.set_repository(&format!(
        "[repository]\nlocation = \"{}\"\npassword = {{ file = \"{}\" }}\nkey_cache = \"{}\"",
        setup.repo.display(),
        password_file.display(),
        cache.display()
    ));
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let debug = [("RUST_LOG", "dr_storage=debug")];
    let segment = |n: u32| {
        let path = dir.join(format!("0000000100000000000000{n:02X}"));
        std::fs::write(&path, segment_bytes(n)).unwrap();
        path
    };

    // The first push derives the key and caches it, privately.
    let first = segment(1);
    let push = setup
        .drkit_with(&["wal", "push", first.to_str().unwrap()], &debug)
        .await;
    assert!(push.status.success(), "{}", text(&push));
    assert!(
        !text(&push).contains("from the key cache"),
        "{}",
        text(&push)
    );
    let entries = files_in(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(mode_of(&cache), 0o700);
    assert_eq!(mode_of(&entries[0]), 0o600);
    let entry = std::fs::read(&entries[0]).unwrap();

    // The next ones take it from there, and skip the store's create-only check.
    for n in [2, 3] {
        let push = setup
            .drkit_with(&["wal", "push", segment(n).to_str().unwrap()], &debug)
            .await;
        assert!(push.status.success(), "{}", text(&push));
        assert!(
            text(&push).contains("from the key cache"),
            "{}",
            text(&push)
        );
        assert!(
            text(&push).contains("create-only check skipped"),
            "{}",
            text(&push)
        );
    }

    // A wrong password fails as it did without a cache, and stores nothing.
    std::fs::write(&password_file, "guess\n").unwrap();
    let fourth = segment(4);
    let push = setup
        .drkit_with(&["wal", "push", fourth.to_str().unwrap()], &debug)
        .await;
    assert_eq!(push.status.code(), Some(1), "{}", text(&push));
    assert!(text(&push).contains("wrong password"), "{}", text(&push));
    assert!(
        !text(&push).contains("from the key cache"),
        "{}",
        text(&push)
    );
    assert_eq!(files_in(&cache), entries);
    assert_eq!(
        std::fs::read(&entries[0]).unwrap(),
        entry,
        "the entry is kept"
    );
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let fetch = setup
        .drkit(&[
            "wal",
            "fetch",
            "000000010000000000000004",
            dir.join("back").to_str().unwrap(),
        ])
        .await;
    assert_eq!(fetch.status.code(), Some(1), "{}", text(&fetch));

    // Every segment pushed comes back.
    for n in 1..=3 {
        let name = format!("0000000100000000000000{n:02X}");
        let back = dir.join("back");
        let fetch = setup
            .drkit(&["wal", "fetch", &name, back.to_str().unwrap()])
            .await;
        assert!(fetch.status.success(), "{}", text(&fetch));
        assert!(std::fs::read(&back).unwrap() == segment_bytes(n));
    }

    // DRKIT_KEY_CACHE=off: no cache, the key derived.
    let push = setup
        .drkit_with(
            &["wal", "push", fourth.to_str().unwrap()],
            &[("RUST_LOG", "dr_storage=debug"), ("DRKIT_KEY_CACHE", "off")],
        )
        .await;
    assert!(push.status.success(), "{}", text(&push));
    assert!(!text(&push).contains("key cache"), "{}", text(&push));
    let push = setup
        .drkit_with(
            &["wal", "push", fourth.to_str().unwrap()],
            &[("DRKIT_KEY_CACHE", "maybe")],
        )
        .await;
    assert_eq!(push.status.code(), Some(2), "{}", text(&push));
    assert!(text(&push).contains("DRKIT_KEY_CACHE"), "{}", text(&push));

    // A cache directory others may read is not used, and says so.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let push = setup
        .drkit_with(&["wal", "push", segment(5).to_str().unwrap()], &debug)
        .await;
    assert!(push.status.success(), "{}", text(&push));
    assert!(
        text(&push).contains("key cache not used"),
        "{}",
        text(&push)
    );
    assert!(
        !text(&push).contains("from the key cache"),
        "{}",
        text(&push)
    );
}

#[tokio::test]
async fn without_a_setting_the_key_is_cached_under_the_users_cache_directory() {
    let setup = Setup::new(1, "unused", r#"{ rto = "30m", rpo = "0s" }"#);
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let segment = setup.dir.path().join("000000010000000000000001");
    std::fs::write(&segment, segment_bytes(1)).unwrap();
    // Setup::drkit points XDG_CACHE_HOME at a directory of the test's own.
    let push = setup
        .drkit(&["wal", "push", segment.to_str().unwrap()])
        .await;
    assert!(push.status.success(), "{}", text(&push));
    let keys = setup.cache_home.path().join("drkit/keys");
    assert_eq!(files_in(&keys).len(), 1);
    assert_eq!(mode_of(&keys), 0o700);

    // With key_cache = false, nothing is cached.
    std::fs::remove_dir_all(&keys).unwrap();
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace("[[component]]", "key_cache = false\n\n[[component]]"),
    )
    .unwrap();
    let push = setup
        .drkit(&["wal", "push", segment.to_str().unwrap()])
        .await;
    assert!(push.status.success(), "{}", text(&push));
    assert!(!keys.exists());

    // A relative directory is a config error naming the field.
    std::fs::write(
        &setup.config,
        config.replace("[[component]]", "key_cache = \"keys\"\n\n[[component]]"),
    )
    .unwrap();
    let push = setup
        .drkit(&["wal", "push", segment.to_str().unwrap()])
        .await;
    assert_eq!(push.status.code(), Some(2), "{}", text(&push));
    assert!(
        text(&push).contains("repository.key_cache") && text(&push).contains("relative"),
        "{}",
        text(&push)
    );
}
