//! The replication client against real PostgreSQL servers from dr-testkit:
//! connecting (trust, md5, SCRAM, TLS, Unix socket), the walsender's
//! commands, a base backup taken apart, WAL streamed and acknowledged, and a
//! timeline switch followed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::WAIT;
use dr_core::{ErrorKind, Lsn};
use dr_postgres::replication::{
    BaseBackupEvent, BaseBackupOptions, CreateSlotOptions, ReplicationClient, StandbyStatus,
    WalEvent,
};
use dr_postgres::{Error, SqlState, Tls};
use dr_testkit::eventually;
use dr_testkit::{Auth, Postgres, PostgresOptions};
use tokio::io::AsyncReadExt;
use tokio_postgres::config::SslMode;

async fn replication(pg: &Postgres) -> ReplicationClient {
    ReplicationClient::connect(&pg.config("postgres"), &Tls::none())
        .await
        .expect("replication connection")
}

/// Gives a file or directory the owner of the server's data directory, so
/// the server (running as `postgres` when the tests run as root) can use it.
fn give_to_server(pg: &Postgres, path: &Path) {
    let owner = std::fs::metadata(pg.data_dir()).unwrap();
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

/// The files of a ustar archive (regular files only), by path.
fn untar(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut at = 0;
    while at + 512 <= archive.len() {
        let header = &archive[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8(raw[..end].to_vec()).unwrap()
        };
        let name = field(0..100);
        let size = u64::from_str_radix(field(124..136).trim(), 8).unwrap() as usize;
        let kind = header[156];
        at += 512;
        if kind == b'0' || kind == 0 {
            files.insert(name, archive[at..at + size].to_vec());
        }
        at += size.div_ceil(512) * 512;
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_system_matches_pg_control() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let row = control
        .query_one(
            "SELECT system_identifier::text, timeline_id FROM pg_control_checkpoint() \
             JOIN pg_control_system() ON true",
            &[],
        )
        .await
        .unwrap();
    let system_id: u64 = row.get::<_, String>(0).parse().unwrap();

    let mut client = replication(&pg).await;
    assert!(!client.is_tls());
    assert_eq!(client.server_major_version(), Some(15));
    let identity = client.identify_system().await.unwrap();
    assert_eq!(identity.system_id, system_id);
    assert_eq!(identity.timeline, row.get::<_, i32>(1) as u32);
    assert_eq!(identity.timeline, 1);
    assert!(identity.xlogpos > Lsn::ZERO);
    assert_eq!(identity.dbname, None);
    assert_eq!(client.wal_segment_size().await.unwrap(), 16 << 20);
    assert_eq!(client.show("wal_level").await.unwrap(), "replica");

    // The walsender shows up with its application name.
    let mut named = pg.config("postgres");
    named.application_name("drkit-test");
    let mut named = ReplicationClient::connect(&named, &Tls::none())
        .await
        .unwrap();
    named.identify_system().await.unwrap();
    let senders: i64 = control
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' \
             AND application_name = 'drkit-test'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(senders, 1);
    named.close().await.unwrap();

    // Over the Unix socket (trusted locally).
    let mut local = tokio_postgres::Config::new();
    local
        .host_path(pg.socket_dir())
        .port(pg.port())
        .user(dr_testkit::SUPERUSER);
    let mut local = ReplicationClient::connect(&local, &Tls::none())
        .await
        .unwrap();
    assert_eq!(local.identify_system().await.unwrap().system_id, system_id);
    assert!(local.addr().ends_with(&format!(".s.PGSQL.{}", pg.port())));

    // The connection stays usable after a command.
    assert_eq!(client.identify_system().await.unwrap().system_id, system_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_refuses_a_wrong_password_with_28p01() {
    let pg = Postgres::start_with(PostgresOptions::default().auth(Auth::ScramSha256))
        .await
        .unwrap();
    replication(&pg).await.identify_system().await.unwrap();

    let mut wrong = pg.config("postgres");
    wrong.password("not-the-password");
    let err = ReplicationClient::connect(&wrong, &Tls::none())
        .await
        .expect_err("wrong password accepted");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    let server = err.server_error().unwrap();
    assert_eq!(server.severity, "FATAL");
    assert!(
        server.message.contains("password authentication failed"),
        "{err}"
    );
    assert!(err.to_string().contains("28P01"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(dr_core::Error::from(err).kind(), ErrorKind::Auth);

    let mut missing = tokio_postgres::Config::new();
    missing
        .host("127.0.0.1")
        .port(pg.port())
        .user(dr_testkit::SUPERUSER);
    let err = ReplicationClient::connect(&missing, &Tls::none())
        .await
        .expect_err("no password accepted");
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Auth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_authenticates_and_refuses_a_wrong_password() {
    let pg = Postgres::start_with(PostgresOptions::default().auth(Auth::Md5))
        .await
        .unwrap();
    let mut client = replication(&pg).await;
    assert_eq!(client.identify_system().await.unwrap().timeline, 1);

    let mut wrong = pg.config("postgres");
    wrong.password("not-the-password");
    let err = ReplicationClient::connect(&wrong, &Tls::none())
        .await
        .expect_err("wrong password accepted");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    assert_eq!(dr_core::Error::from(err).kind(), ErrorKind::Auth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_needs_no_password() {
    let pg = Postgres::start_with(PostgresOptions::default().auth(Auth::Trust))
        .await
        .unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg.port())
        .user(dr_testkit::SUPERUSER);
    let mut client = ReplicationClient::connect(&config, &Tls::none())
        .await
        .unwrap();
    assert_eq!(client.identify_system().await.unwrap().timeline, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_are_unavailable_and_silent_ones_time_out() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(port).user("postgres");
    let err = ReplicationClient::connect(&config, &Tls::none())
        .await
        .expect_err("connected to a closed port");
    match &err {
        Error::Connect { addr, source } => {
            assert_eq!(addr, &format!("127.0.0.1:{port}"));
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected Error::Connect, got {other:?}"),
    }
    assert!(err.is_retryable());
    let core = dr_core::Error::from(err);
    assert_eq!(core.kind(), ErrorKind::Unavailable);
    assert!(core.is_retryable());

    // A socket that accepts and never answers: connect_timeout covers startup.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(silent.local_addr().unwrap().port())
        .user("postgres")
        .connect_timeout(Duration::from_millis(300));
    let err = ReplicationClient::connect(&config, &Tls::none())
        .await
        .expect_err("a silent server answered");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(dr_core::Error::from(err).kind(), ErrorKind::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_created_read_and_dropped() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let mut client = replication(&pg).await;

    let slot = client
        .create_physical_slot(
            "drkit_archiver",
            &CreateSlotOptions::new().reserve_wal(true),
        )
        .await
        .unwrap();
    assert_eq!(slot.name, "drkit_archiver");
    let row = control
        .query_one(
            "SELECT slot_type, temporary, restart_lsn::text FROM pg_replication_slots \
             WHERE slot_name = 'drkit_archiver'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "physical");
    assert!(!row.get::<_, bool>(1));
    let restart: Lsn = row.get::<_, String>(2).parse().unwrap();

    let position = client
        .read_replication_slot("drkit_archiver")
        .await
        .unwrap()
        .expect("slot found");
    assert_eq!(position.restart_lsn, Some(restart));
    assert_eq!(position.restart_timeline, Some(1));
    assert_eq!(
        client.read_replication_slot("no_such_slot").await.unwrap(),
        None
    );

    let err = client
        .create_physical_slot("drkit_archiver", &CreateSlotOptions::new())
        .await
        .expect_err("duplicate slot");
    assert_eq!(err.code(), Some(&SqlState::DUPLICATE_OBJECT), "{err}");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);

    let err = client
        .create_physical_slot("Bad-Name", &CreateSlotOptions::new())
        .await
        .expect_err("invalid slot name accepted");
    assert_eq!(err.code(), Some(&SqlState::INVALID_NAME), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // A quote in a name cannot end the command early.
    let err = client
        .drop_slot("x\" WAIT", false)
        .await
        .expect_err("odd name accepted");
    assert!(err.code().is_some(), "{err}");

    client.drop_slot("drkit_archiver", false).await.unwrap();
    let left: i64 = control
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let err = client
        .drop_slot("drkit_archiver", true)
        .await
        .expect_err("dropped twice");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_OBJECT), "{err}");
    assert_eq!(dr_core::Error::from(err).kind(), ErrorKind::NotFound);

    // A temporary slot lives as long as its connection.
    let mut owner = replication(&pg).await;
    owner
        .create_physical_slot("drkit_temp", &CreateSlotOptions::new().temporary(true))
        .await
        .unwrap();
    let temporary: bool = control
        .query_one(
            "SELECT temporary FROM pg_replication_slots WHERE slot_name = 'drkit_temp'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(temporary);
    owner.close().await.unwrap();
    eventually("the temporary slot to go", WAIT, || async {
        let n: i64 = control
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'drkit_temp'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_and_slots_are_server_errors() {
    let pg = Postgres::start().await.unwrap();
    let mut client = replication(&pg).await;

    // A physical walsender takes anything that is not a replication command
    // for SQL, which it refuses as unsupported.
    let err = client
        .simple_query("FROBNICATE THE WAL")
        .await
        .expect_err("unknown command accepted");
    assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{err}");
    assert!(
        err.to_string()
            .contains("cannot execute SQL commands in WAL sender"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    // A replication command with bad arguments is a syntax error.
    let err = client
        .simple_query("TIMELINE_HISTORY none")
        .await
        .expect_err("bad arguments accepted");
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // The connection survives an ERROR.
    let rows = client.simple_query("SHOW max_wal_senders").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get_str(0).unwrap(), Some("10"));
    assert_eq!(rows[0].columns(), ["max_wal_senders"]);

    let err = client
        .show("no_such_setting")
        .await
        .expect_err("unknown setting");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_OBJECT), "{err}");

    let start = client.identify_system().await.unwrap().xlogpos;
    let err = client
        .start_replication(Some("no_such_slot"), start, None)
        .await
        .expect_err("unknown slot accepted");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_OBJECT), "{err}");

    // An error inside CopyBoth ends the stream; the connection is handed back.
    let client = replication(&pg).await;
    let ahead = Lsn::new(start.as_u64() + (1 << 30));
    let mut stream = client.start_replication(None, ahead, None).await.unwrap();
    let err = stream.next().await.expect_err("streamed from the future");
    assert!(err.server_error().is_some(), "{err}");
    assert!(
        err.to_string().contains("ahead of the WAL flush position"),
        "{err}"
    );
    assert!(stream.next().await.is_err());
    let (mut client, ended) = stream.finish().await.unwrap();
    assert_eq!(ended, None);
    client.identify_system().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backup_streams_tablespaces_and_manifest() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let tablespace_dir = pg.dir().join("ts1");
    std::fs::create_dir(&tablespace_dir).unwrap();
    give_to_server(&pg, &tablespace_dir);
    control
        .batch_execute(&format!(
            "CREATE TABLESPACE ts1 LOCATION '{}'",
            tablespace_dir.display()
        ))
        .await
        .unwrap();
    control
        .batch_execute(
            "CREATE TABLE drill (id int, pad text) TABLESPACE ts1; \
             INSERT INTO drill SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i",
        )
        .await
        .unwrap();
    let ts_oid: u32 = control
        .query_one("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'", &[])
        .await
        .unwrap()
        .get(0);

    let mut client = replication(&pg).await;
    let system_id = client.identify_system().await.unwrap().system_id;
    let options = BaseBackupOptions::new("drkit test")
        .fast_checkpoint(true)
        .progress(true)
        .wait_for_archive(false);
    let mut backup = client.base_backup(&options).await.unwrap();
    assert!(backup.start_lsn() > Lsn::ZERO);
    assert_eq!(backup.timeline(), 1);
    let tablespaces = backup.tablespaces().to_vec();
    assert_eq!(tablespaces.len(), 2, "{tablespaces:?}");
    assert_eq!(tablespaces[0].oid, Some(ts_oid));
    assert_eq!(
        tablespaces[0].location.as_deref(),
        Some(tablespace_dir.to_str().unwrap())
    );
    assert!(tablespaces[0].size_kib.unwrap() > 0);
    assert_eq!(tablespaces[1].oid, None, "the data directory comes last");

    // The tablespace archive through next(), the data directory through a
    // reader, the manifest through a reader.
    let mut archives: Vec<(String, Option<String>, Vec<u8>)> = Vec::new();
    let mut manifest = None;
    let mut end = None;
    let mut progress = 0;
    while let Some(event) = backup.next().await.unwrap() {
        match event {
            BaseBackupEvent::ArchiveStart { name, tablespace } => {
                let mut content = Vec::new();
                if tablespace.is_none() {
                    backup.reader().read_to_end(&mut content).await.unwrap();
                }
                archives.push((name, tablespace, content));
            }
            BaseBackupEvent::Data(data) => {
                let (_, tablespace, content) = archives.last_mut().expect("data in an archive");
                assert!(tablespace.is_some(), "base.tar data outside its reader");
                content.extend_from_slice(&data);
            }
            BaseBackupEvent::Progress { bytes_done } => {
                assert!(bytes_done >= progress);
                progress = bytes_done;
            }
            BaseBackupEvent::ManifestStart => {
                let mut json = Vec::new();
                backup.reader().read_to_end(&mut json).await.unwrap();
                manifest = Some(json);
            }
            BaseBackupEvent::End { end: lsn, timeline } => {
                assert_eq!(timeline, 1);
                end = Some(lsn);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(backup.next().await.unwrap().is_none());
    assert!(backup.bytes_done() > 0);
    let end = end.expect("End event");
    assert!(end >= backup.start_lsn());

    let names: Vec<_> = archives
        .iter()
        .map(|(n, t, _)| (n.clone(), t.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (
                format!("{ts_oid}.tar"),
                Some(tablespace_dir.display().to_string())
            ),
            ("base.tar".to_owned(), None),
        ]
    );
    let tablespace_files = untar(&archives[0].2);
    assert!(
        tablespace_files.keys().any(|f| f.starts_with("PG_15_")),
        "{:?}",
        tablespace_files.keys().take(5).collect::<Vec<_>>()
    );
    let base = untar(&archives[1].2);
    assert_eq!(base["PG_VERSION"], b"15\n");
    let pg_control = &base["global/pg_control"];
    assert_eq!(
        u64::from_le_bytes(pg_control[..8].try_into().unwrap()),
        system_id,
        "pg_control of another cluster"
    );
    let label = String::from_utf8(base["backup_label"].clone()).unwrap();
    assert!(label.contains("LABEL: drkit test"), "{label}");
    assert!(!base.contains_key("postmaster.pid"));

    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.expect("a manifest")).unwrap();
    assert_eq!(manifest["PostgreSQL-Backup-Manifest-Version"], 1);
    let files = manifest["Files"].as_array().unwrap();
    let pg_version = files
        .iter()
        .find(|f| f["Path"] == "PG_VERSION")
        .expect("PG_VERSION in the manifest");
    assert_eq!(pg_version["Checksum-Algorithm"], "SHA256");
    assert_eq!(pg_version["Size"], 3);
    assert_eq!(
        manifest["WAL-Ranges"][0]["End-LSN"].as_str().unwrap(),
        end.to_string()
    );

    // The connection is idle again.
    let mut client = backup.into_client().await.unwrap();
    assert_eq!(client.identify_system().await.unwrap().system_id, system_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_base_backup_abandons_it() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let client = replication(&pg).await;
    let mut backup = client
        .base_backup(&BaseBackupOptions::new("abandoned").fast_checkpoint(true))
        .await
        .unwrap();
    assert!(matches!(
        backup.next().await.unwrap(),
        Some(BaseBackupEvent::ArchiveStart { .. })
    ));
    let err = backup
        .into_client()
        .await
        .expect_err("handed back mid-backup");
    assert!(matches!(err, Error::InvalidState { .. }), "{err}");

    // into_client consumed the stream, closing the connection: the server
    // lets go of the backup and another can start.
    eventually("the walsender to go", WAIT, || async {
        let n: i64 = control
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n == 0).then_some(())
    })
    .await;
    let mut again = replication(&pg)
        .await
        .base_backup(
            &BaseBackupOptions::new("again")
                .fast_checkpoint(true)
                .manifest(None),
        )
        .await
        .unwrap();
    let mut saw_end = false;
    while let Some(event) = again.next().await.unwrap() {
        assert!(!matches!(event, BaseBackupEvent::ManifestStart));
        saw_end |= matches!(event, BaseBackupEvent::End { .. });
    }
    assert!(saw_end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_streams_and_status_updates_move_the_slot() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let mut client = replication(&pg).await;
    let segment = client.wal_segment_size().await.unwrap();
    client
        .create_physical_slot("drkit_wal", &CreateSlotOptions::new().reserve_wal(true))
        .await
        .unwrap();
    let identity = client.identify_system().await.unwrap();
    // Stream whole segments, as an archiver does.
    let start = Lsn::new(identity.xlogpos.as_u64() / segment * segment);

    control
        .batch_execute(
            "CREATE TABLE drill (id int); INSERT INTO drill SELECT generate_series(1, 1000)",
        )
        .await
        .unwrap();
    let switched: Lsn = control
        .query_one("SELECT pg_switch_wal()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();

    let mut stream = client
        .start_replication(Some("drkit_wal"), start, Some(identity.timeline))
        .await
        .unwrap();
    assert_eq!(stream.start_lsn(), start);
    let mut received = start;
    let mut page_headers = 0;
    let mut server_time = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received < switched {
        assert!(Instant::now() < deadline, "WAL stopped at {received}");
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("WAL within 10 s")
            .unwrap()
            .expect("the stream ended early");
        match event {
            WalEvent::XLogData(data) => {
                assert_eq!(data.start, received, "a gap in the WAL");
                assert!(data.end_of_wal >= data.start);
                // Every 8 KiB page up to the switch starts with a header whose
                // magic is 0xD1xx (the rest of a switched segment is zeros).
                let first = (8192 - data.start.as_u64() % 8192) % 8192;
                for offset in (first as usize..data.data.len().saturating_sub(1)).step_by(8192) {
                    if data.start.as_u64() + (offset as u64) < switched.as_u64() {
                        assert_eq!(data.data[offset + 1], 0xD1, "no page header at {offset}");
                        page_headers += 1;
                    }
                }
                received = data.end();
                server_time = Some(data.server_time);
            }
            WalEvent::Keepalive(keepalive) => {
                if keepalive.reply_requested {
                    stream
                        .send_status(StandbyStatus::new(received, start, Lsn::ZERO))
                        .await
                        .unwrap();
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(page_headers > 0);
    let age = jiff::Timestamp::now().duration_since(server_time.unwrap());
    assert!(age.abs().as_secs() < 60, "server time off by {age:?}");

    // Report everything flushed: the slot moves to it.
    stream
        .send_status(StandbyStatus::new(received, received, Lsn::ZERO).reply_requested(true))
        .await
        .unwrap();
    let restart = eventually("the slot to move", WAIT, || async {
        let row = control
            .query_one(
                "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'drkit_wal'",
                &[],
            )
            .await
            .unwrap();
        let restart: Lsn = row.get::<_, String>(0).parse().unwrap();
        (restart == received).then_some(restart)
    })
    .await;
    assert!(restart >= switched);
    let flushed: String = control
        .query_one("SELECT flush_lsn::text FROM pg_stat_replication", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(flushed.parse::<Lsn>().unwrap(), received);

    // Ending the stream from our side hands the client back.
    let (mut client, ended) = stream.finish().await.unwrap();
    assert_eq!(ended, None, "the current timeline does not end");
    assert_eq!(client.identify_system().await.unwrap().timeline, 1);
    client.drop_slot("drkit_wal", true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timelines_are_followed_after_promotion() {
    let primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    replica.promote().await.unwrap();

    let mut client = replication(&replica).await;
    assert_eq!(client.identify_system().await.unwrap().timeline, 2);
    let history = client.timeline_history(2).await.unwrap();
    assert_eq!(history.filename, "00000002.history");
    let text = String::from_utf8(history.content.to_vec()).unwrap();
    assert!(text.starts_with("1\t"), "{text:?}");
    let entries = history.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].timeline, 1);
    let switch = entries[0].switch_point;

    let err = client
        .timeline_history(1)
        .await
        .expect_err("timeline 1 has no history file");
    assert!(err.code().is_some(), "{err}");

    // Streaming the old timeline ends at the switch point.
    let segment = client.wal_segment_size().await.unwrap();
    let start = Lsn::new(switch.as_u64() / segment * segment);
    let mut stream = client
        .start_replication(None, start, Some(1))
        .await
        .unwrap();
    let mut received = start;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the old timeline within 10 s")
        .unwrap()
    {
        if let WalEvent::XLogData(data) = event {
            assert_eq!(data.start, received);
            received = data.end();
        }
    }
    assert_eq!(received, switch, "streamed past the end of timeline 1");
    let (client, ended) = stream.finish().await.unwrap();
    let ended = ended.expect("the end of timeline 1");
    assert_eq!((ended.next_timeline, ended.next_start), (2, switch));

    // Starting right at the switch point: nothing to stream, only the answer.
    let mut stream = client
        .start_replication(None, switch, Some(1))
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_none());
    let (mut client, ended) = stream.finish().await.unwrap();
    assert_eq!(ended.map(|e| e.next_timeline), Some(2));

    // And the new timeline streams from there.
    let _ = client.identify_system().await.unwrap();
    let mut stream = client
        .start_replication(None, start, Some(2))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("timeline 2 within 10 s")
        .unwrap();
    assert!(matches!(first, Some(WalEvent::XLogData(_))), "{first:?}");
    stream.finish().await.unwrap();
}

/// Makes a CA and a server certificate for 127.0.0.1 and gives the server
/// its key and certificate; returns the CA certificate's PEM path.
async fn make_certificates(pg: &Postgres, dir: &Path) -> std::path::PathBuf {
    dr_testkit::make_certificates(dir).unwrap();
    // The server reads its key and certificate from its own directory.
    for name in ["server.key", "server.crt"] {
        let target = pg.dir().join(name);
        std::fs::copy(dir.join(name), &target).unwrap();
        give_to_server(pg, &target);
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    dir.join("ca.crt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_negotiated_and_verified() {
    let pg = Postgres::start().await.unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca = make_certificates(&pg, certs.path()).await;
    let control = pg.connect("postgres").await.unwrap();
    for setting in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            pg.dir().join("server.crt").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            pg.dir().join("server.key").display()
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        control.batch_execute(&setting).await.unwrap();
    }

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&ca).unwrap())
        .unwrap();
    let verified = Tls::with_root_certificates(roots).unwrap();
    let mut require = pg.config("postgres");
    require.ssl_mode(SslMode::Require);

    let mut client = eventually("the server to offer TLS", WAIT, || {
        let (require, verified) = (require.clone(), verified.clone());
        async move { ReplicationClient::connect(&require, &verified).await.ok() }
    })
    .await;
    assert!(client.is_tls());
    client.identify_system().await.unwrap();
    let ssl: bool = control
        .query_one(
            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE backend_type = 'walsender'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the server does not see TLS");

    // require without any TLS configuration refuses to go plain.
    let err = ReplicationClient::connect(&require, &Tls::none())
        .await
        .expect_err("require without TLS");
    assert!(matches!(err, Error::Tls { source: None, .. }), "{err:?}");

    // prefer without a TLS configuration connects in plain text.
    let mut prefer = pg.config("postgres");
    prefer.ssl_mode(SslMode::Prefer);
    assert!(
        !ReplicationClient::connect(&prefer, &Tls::none())
            .await
            .unwrap()
            .is_tls()
    );
    assert!(
        ReplicationClient::connect(&prefer, &verified)
            .await
            .unwrap()
            .is_tls()
    );

    // A certificate for another name is refused; accepting anything is a choice.
    let mut by_name_only = tokio_postgres::Config::new();
    by_name_only
        .host("localhost")
        .hostaddr("127.0.0.1".parse().unwrap())
        .port(pg.port())
        .user(dr_testkit::SUPERUSER)
        .password(pg.password())
        .ssl_mode(SslMode::Require);
    let err = ReplicationClient::connect(&by_name_only, &verified)
        .await
        .expect_err("certificate for 127.0.0.1 accepted for localhost");
    assert!(
        matches!(
            err,
            Error::Tls {
                source: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Auth);
    let mut anything = ReplicationClient::connect(
        &by_name_only,
        &Tls::dangerous_accept_any_certificate().unwrap(),
    )
    .await
    .unwrap();
    assert!(anything.is_tls());
    anything.identify_system().await.unwrap();

    // A caller's own rustls configuration.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&ca).unwrap())
        .unwrap();
    let own = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let own = ReplicationClient::connect(&require, &Tls::from_client_config(Arc::new(own)))
        .await
        .unwrap();
    assert!(own.is_tls());

    // A base backup over TLS.
    let mut backup = own
        .base_backup(
            &BaseBackupOptions::new("tls")
                .fast_checkpoint(true)
                .manifest(None),
        )
        .await
        .unwrap();
    let mut bytes = 0;
    while let Some(event) = backup.next().await.unwrap() {
        if let BaseBackupEvent::Data(data) = event {
            bytes += data.len();
        }
    }
    assert!(bytes > 1 << 20);
}
