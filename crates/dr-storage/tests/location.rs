//! Repository locations: the strings accepted and refused, Display and
//! FromStr as a round trip, and repositories created and opened through a
//! location on a local directory and on the S3 server.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use dr_core::ErrorKind;
use dr_storage::prelude::*;
use dr_storage::{
    Error, KeyCache, KeyOrigin, LocalPath, Location, LocationOptions, OpenOptions, Repository,
    RetryOptions, S3Credentials, S3Location, Secret,
};
use proptest::prelude::*;

use crate::common::{PASSWORD, read, small};

fn local(path: &str) -> Location {
    Location::Local(LocalPath::new(path).unwrap())
}

fn s3(bucket: &str, prefix: &str) -> Location {
    Location::S3(S3Location::new(bucket, prefix).unwrap())
}

#[test]
fn accepted_locations() {
    // The string, what it parses to, and how that is written back.
    let table = [
        (
            "/var/lib/drkit/repo",
            local("/var/lib/drkit/repo"),
            "/var/lib/drkit/repo",
        ),
        ("./repo", local("./repo"), "./repo"),
        ("repo", local("repo"), "repo"),
        ("../backups/x y", local("../backups/x y"), "../backups/x y"),
        ("./repo:2024", local("./repo:2024"), "./repo:2024"),
        ("/srv/a%20b", local("/srv/a%20b"), "/srv/a%20b"),
        (
            "file:///var/lib/drkit/repo",
            local("/var/lib/drkit/repo"),
            "/var/lib/drkit/repo",
        ),
        ("file://localhost/srv/r", local("/srv/r"), "/srv/r"),
        ("FILE://LOCALHOST/srv/r", local("/srv/r"), "/srv/r"),
        (
            "file:///srv/drkit%20repo%2Fx",
            local("/srv/drkit repo/x"),
            "/srv/drkit repo/x",
        ),
        ("file:///", local("/"), "/"),
        ("s3://backups", s3("backups", ""), "s3://backups"),
        ("s3://backups/", s3("backups", ""), "s3://backups"),
        (
            "s3://backups/prod/db",
            s3("backups", "prod/db"),
            "s3://backups/prod/db",
        ),
        (
            "s3://backups/prod/db/",
            s3("backups", "prod/db"),
            "s3://backups/prod/db",
        ),
        (
            "s3://my.bucket-1/a%2Fb",
            s3("my.bucket-1", "a%2Fb"),
            "s3://my.bucket-1/a%2Fb",
        ),
        ("S3://abc", s3("abc", ""), "s3://abc"),
    ];
    for (text, expected, written) in table {
        let parsed: Location = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parsed.to_string(), written, "{text}");
        assert_eq!(written.parse::<Location>().unwrap(), parsed, "{written}");
    }
    let Location::S3(s3) = "s3://backups/prod/".parse().unwrap() else {
        panic!("not an S3 location");
    };
    assert_eq!((s3.bucket(), s3.prefix()), ("backups", "prod"));
}

#[test]
fn refused_locations() {
    // The string and a piece of the reason given.
    let table = [
        ("", "it is empty"),
        ("gs://bucket/x", "the scheme gs: is not supported"),
        ("http://host/x", "the scheme http: is not supported"),
        ("repo:2024", "written ./repo:2024"),
        ("s3://", "it names no bucket"),
        ("s3:///prefix", "it names no bucket"),
        ("s3:bucket", "an S3 location begins s3://"),
        ("s3://Backups", "only lowercase letters, digits"),
        ("s3://ab", "3 to 63 characters"),
        ("s3://-bucket", "begins and ends with a letter or digit"),
        ("s3://a..b", "no two adjacent periods"),
        ("s3://192.168.1.1", "not an IP address"),
        ("s3://xn--bucket", "reserved by S3"),
        ("s3://bucket-s3alias", "reserved by S3"),
        ("s3://my_bucket", "only lowercase letters, digits"),
        ("s3://bucket/../x", "bad key prefix"),
        ("s3://bucket/a//b", "bad key prefix"),
        ("s3://bucket/a b", "bad key prefix"),
        ("s3://bucket//", "bad key prefix"),
        ("s3://bucket?region=x", "bad bucket name"),
        ("file://server/share", "its host is empty or localhost"),
        ("file:relative", "a file URL begins file:///"),
        ("file://localhost", "needs an absolute path"),
        ("file:///a%2", "two hexadecimal digits"),
        ("file:///a%00b", "NUL byte"),
        ("file:///a?b", "'?' or '#'"),
    ];
    for (text, reason) in table {
        let err = text.parse::<Location>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text}");
        let message = err.to_string();
        assert!(message.contains(reason), "{text}: {message}");
        assert!(
            message.contains(&format!("repository location {text:?}")),
            "{text}: {message}"
        );
        assert!(
            message.contains("file:///absolute/path or s3://bucket[/prefix]"),
            "{text}: {message}"
        );
    }
}

#[test]
fn parts_are_checked_when_made_directly() {
    assert!(LocalPath::new("").is_err());
    assert!(S3Location::new("UPPER", "").is_err());
    assert!(S3Location::new("bucket", "/abs").is_err());
    assert_eq!(S3Location::new("bucket", "p/").unwrap().prefix(), "p");
    assert_eq!(LocalPath::new("a:b").unwrap().as_path(), Path::new("./a:b"));
}

/// A bucket name by S3's rules: dot- or dash-joined runs, none reserved.
fn bucket() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}([.-][a-z0-9]{1,8}){1,4}".prop_filter("reserved or an IP address", |b| {
        b.parse::<std::net::Ipv4Addr>().is_err()
            && !b.starts_with("sthree-")
            && !b.starts_with("amzn-s3-demo-")
            && !b.ends_with("-s3alias")
            && !b.ends_with(".mrap")
    })
}

/// A key prefix: up to four valid segments.
fn prefix() -> impl Strategy<Value = String> {
    prop::collection::vec(
        "[A-Za-z0-9._%-]{1,10}".prop_filter("dot segment", |s| s != "." && s != ".."),
        0..4,
    )
    .prop_map(|segments| segments.join("/"))
}

/// A path's text: segments of anything but `/` and NUL.
fn path_text() -> impl Strategy<Value = String> {
    prop::collection::vec(r"[^/\x00]{1,10}", 1..5).prop_map(|segments| segments.join("/"))
}

proptest! {
    #[test]
    fn s3_locations_round_trip(bucket in bucket(), prefix in prefix(), slash in any::<bool>()) {
        let text = match (prefix.is_empty(), slash) {
            (true, false) => format!("s3://{bucket}"),
            (true, true) => format!("s3://{bucket}/"),
            (false, false) => format!("s3://{bucket}/{prefix}"),
            (false, true) => format!("s3://{bucket}/{prefix}/"),
        };
        let parsed: Location = text.parse().unwrap();
        prop_assert_eq!(&parsed, &s3(&bucket, &prefix));
        let written = parsed.to_string();
        prop_assert_eq!(written.parse::<Location>().unwrap(), parsed);
        prop_assert_eq!(written, text.trim_end_matches('/'));
    }

    #[test]
    fn local_paths_round_trip(text in path_text(), absolute in any::<bool>()) {
        let text = if absolute { format!("/{text}") } else { text };
        let location = Location::Local(LocalPath::new(&text).unwrap());
        prop_assert_eq!(location.to_string().parse::<Location>().unwrap(), location);
        if absolute || text.starts_with('.') {
            // Text that is a path as it stands is written back as it was given.
            prop_assert_eq!(text.parse::<Location>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn any_absolute_path_round_trips(bytes in prop::collection::vec(1u8.., 1..40)) {
        let mut path = b"/".to_vec();
        path.extend(bytes);
        let location = Location::Local(LocalPath::new(OsStr::from_bytes(&path)).unwrap());
        prop_assert_eq!(location.to_string().parse::<Location>().unwrap(), location);
    }
}

#[test]
fn options_from_pairs() {
    let options = LocationOptions::from_pairs([
        ("region", "eu-west-1"),
        ("endpoint", "http://127.0.0.1:9000"),
        ("path_style", "false"),
        ("object_lock", "true"),
    ])
    .unwrap();
    let expected = LocationOptions::default()
        .region("eu-west-1")
        .endpoint("http://127.0.0.1:9000")
        .path_style(false)
        .object_lock(true);
    assert_eq!(options, expected);
    assert_eq!(
        LocationOptions::from_pairs(Vec::<(String, String)>::new()).unwrap(),
        LocationOptions::default()
    );

    for (pairs, reason) in [
        (
            vec![("bucket", "b")],
            "unknown key; the keys are region, endpoint, path_style, object_lock",
        ),
        (
            vec![("path_style", "yes")],
            "\"yes\" is neither true nor false",
        ),
        (
            vec![("object_lock", "TRUE")],
            "\"TRUE\" is neither true nor false",
        ),
        (vec![("region", "")], "not a region"),
        (vec![("endpoint", "127.0.0.1:9000")], "not an endpoint URL"),
        (
            vec![("region", "a"), ("region", "b")],
            "given more than once",
        ),
    ] {
        let key = pairs[pairs.len() - 1].0;
        let err = LocationOptions::from_pairs(pairs).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let message = err.to_string();
        assert!(message.contains(reason), "{message}");
        assert!(
            message.contains(&format!("location option {key:?}")),
            "{message}"
        );
    }
}

fn secret() -> Secret {
    Secret::password(PASSWORD)
}

/// A snapshot of one stream of `len` bytes made from `seed`: its id and the bytes.
async fn backup(repo: &Repository, seed: u64, len: usize) -> (dr_core::SnapshotId, Vec<u8>) {
    let bytes = crate::common::data(seed, len);
    let component = crate::common::component("redis/master-0");
    let at = jiff::Timestamp::now();
    let manifest =
        crate::common::backup_at(repo, &component, at, &[("dump.rdb", &bytes)], &[]).await;
    (manifest.id, bytes)
}

/// Creates a repository at `location` and checks it through every way of
/// opening it: a snapshot written after `init_at` reads back after
/// `open_at` (which writes one of its own) and after `open_read_only_at`,
/// also through a key cache, and a wrong password is refused as `Auth`.
async fn init_write_open_read(location: &Location, options: &LocationOptions) -> Repository {
    let repo = Repository::init_at(location, options, small())
        .await
        .unwrap();
    let (first_id, first) = backup(&repo, 3, 300 * 1024).await;

    let opened = Repository::open_at(location, options, Some(&secret()))
        .await
        .unwrap();
    assert!(!opened.is_read_only());
    assert_eq!(read(&opened, &first_id, "dump.rdb").await.unwrap(), first);
    let (second_id, second) = backup(&opened, 4, 200 * 1024).await;

    let read_only = Repository::open_read_only_at(location, options, Some(&secret()))
        .await
        .unwrap();
    assert!(read_only.is_read_only());
    assert_eq!(
        read(&read_only, &first_id, "dump.rdb").await.unwrap(),
        first
    );
    assert_eq!(
        read(&read_only, &second_id, "dump.rdb").await.unwrap(),
        second
    );

    let wrong = Repository::open_at(location, options, Some(&Secret::password("not it")))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::WrongPassword { .. }), "{wrong:?}");
    assert_eq!(wrong.kind(), ErrorKind::Auth);

    // Through a key cache: the first open derives the key, the next ones
    // take it from the cache and read the same data; a wrong password
    // still fails.
    let cache = tempfile::tempdir().unwrap();
    let with_cache = |secret: Secret| {
        OpenOptions::new()
            .secret(secret)
            .key_cache(KeyCache::new(cache.path().join("keys")).unwrap())
    };
    let deriving = Repository::open_at_with(location, options, with_cache(secret()))
        .await
        .unwrap();
    assert_eq!(deriving.key_origin(), KeyOrigin::Derived);
    let cached = Repository::open_at_with(location, options, with_cache(secret()))
        .await
        .unwrap();
    assert_eq!(cached.key_origin(), KeyOrigin::Cache);
    assert!(!cached.is_read_only());
    assert_eq!(read(&cached, &first_id, "dump.rdb").await.unwrap(), first);
    let read_only = Repository::open_read_only_at_with(location, options, with_cache(secret()))
        .await
        .unwrap();
    assert_eq!(read_only.key_origin(), KeyOrigin::Cache);
    assert!(read_only.is_read_only());
    assert_eq!(
        read(&read_only, &second_id, "dump.rdb").await.unwrap(),
        second
    );
    let wrong = Repository::open_at_with(location, options, with_cache(Secret::password("not it")))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::WrongPassword { .. }), "{wrong:?}");
    repo
}

#[tokio::test]
async fn a_local_directory_by_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/repo");
    let location: Location = path.to_str().unwrap().parse().unwrap();
    let options = LocationOptions::default();

    // init creates the directory, and its parents.
    let repo = init_write_open_read(&location, &options).await;
    assert!(path.is_dir());
    assert_eq!(repo.backend().location(), path.display().to_string());

    // The same directory as a file URL.
    let url: Location = format!("file://{}", path.display()).parse().unwrap();
    assert_eq!(url, location);
    Repository::open_read_only_at(&url, &options, Some(&secret()))
        .await
        .unwrap();

    // A second init finds the repository.
    let again = Repository::init_at(&location, &options, small())
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{again}");
}

#[tokio::test]
async fn opening_a_missing_directory_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo");
    let location = Location::Local(LocalPath::new(&path).unwrap());
    let options = LocationOptions::default();
    let open = Repository::open_at(&location, &options, Some(&secret()))
        .await
        .unwrap_err();
    let read_only = Repository::open_read_only_at(&location, &options, Some(&secret()))
        .await
        .unwrap_err();
    let backend = location.backend(&options).await.unwrap_err();
    for err in [open, read_only, backend] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert_eq!(
            err.to_string(),
            format!("{} does not exist", path.display())
        );
    }
    assert!(!path.exists());
}

#[tokio::test]
async fn s3_settings_are_refused_for_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Local(LocalPath::new(dir.path()).unwrap());
    let options = LocationOptions::default()
        .endpoint("http://127.0.0.1:9000")
        .object_lock(false);
    let err = location.backend(&options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let message = err.to_string();
    assert!(
        message.contains("endpoint, object_lock apply only to S3 locations"),
        "{message}"
    );
    let err = Repository::init_at(&location, &options, small())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn retries_wrap_the_store_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Local(LocalPath::new(dir.path()).unwrap());
    let plain = location.backend(&LocationOptions::default()).await.unwrap();
    assert!(format!("{plain:?}").starts_with("FsBackend"), "{plain:?}");
    let retry = RetryOptions::new(3, Duration::from_millis(1), Duration::from_millis(5));
    let options = LocationOptions::default().retry(retry);
    let wrapped = location.backend(&options).await.unwrap();
    assert!(format!("{wrapped:?}").starts_with("Retry"), "{wrapped:?}");
    let read = location.read_backend(&options).await.unwrap();
    assert!(format!("{read:?}").starts_with("Retry"), "{read:?}");
    assert_eq!(read.location(), dir.path().display().to_string());
}

#[tokio::test]
async fn an_s3_bucket_by_its_location() {
    let server = dr_testkit::S3::start().await.unwrap();
    let location: Location = format!("s3://{}/tenant/repo/", server.bucket())
        .parse()
        .unwrap();
    assert_eq!(
        location.to_string(),
        format!("s3://{}/tenant/repo", server.bucket())
    );
    let options = LocationOptions::from_pairs([
        ("region", server.region()),
        ("endpoint", &server.endpoint()),
    ])
    .unwrap()
    .credentials(S3Credentials::Static {
        access_key_id: server.access_key_id().to_owned(),
        secret_access_key: server.secret_access_key().to_owned(),
        session_token: None,
    })
    .retry(RetryOptions::new(
        3,
        Duration::from_millis(10),
        Duration::from_millis(100),
    ));

    let repo = init_write_open_read(&location, &options).await;
    assert_eq!(repo.backend().location(), location.to_string());

    // The objects are under the prefix, nowhere else.
    let whole: Location = format!("s3://{}", server.bucket()).parse().unwrap();
    let bucket = whole.read_backend(&options).await.unwrap();
    let keys = bucket.list("").await.unwrap();
    assert!(keys.iter().any(|o| o.key == "tenant/repo/config"));
    assert!(
        keys.iter().all(|o| o.key.starts_with("tenant/repo/")),
        "{keys:?}"
    );

    let elsewhere: Location = format!("s3://{}/other", server.bucket()).parse().unwrap();
    let missing = Repository::open_at(&elsewhere, &options, Some(&secret()))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
}
