//! Fetching RDB snapshots over the replication protocol from real Redis 7.0
//! and 8.2 servers, in both framings, and from peers that misbehave: a wrong
//! password, a user without the permission, something that is not Redis, a
//! server that closes mid-transfer or goes quiet, keep-alives and an end mark
//! split across reads.

use std::time::Duration;

use dr_core::ErrorKind;
use dr_redis::{Error, Framing, RdbTransfer, RedisServer, verify_slice};
use dr_testkit::{Redis, RedisOptions, RedisVersion};

use crate::common::fake_master::{fake_master, small_rdb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn fetch_all(transfer: &mut RdbTransfer) -> Result<Vec<u8>, Error> {
    let mut rdb = Vec::new();
    while let Some(chunk) = transfer.next_chunk().await? {
        rdb.extend_from_slice(&chunk);
    }
    Ok(rdb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_versions_send_a_whole_rdb_in_either_framing() {
    for (version, rdb_version, prefix) in [
        (RedisVersion::System, 10, "7."),
        (RedisVersion::Redis8, 12, "8.2"),
    ] {
        for diskless in ["yes", "no"] {
            let redis = Redis::start_with(
                RedisOptions::default()
                    .version(version)
                    .password("secret")
                    .setting("repl-diskless-sync", diskless),
            )
            .await
            .unwrap();
            let mut con = redis.connection().await.unwrap();
            let mut pipe = redis::pipe();
            for i in 0..2000 {
                pipe.cmd("SET")
                    .arg(format!("key:{i}"))
                    .arg(vec![b'x'; 100 + i % 300])
                    .ignore();
            }
            pipe.cmd("RPUSH").arg("list").arg(&[1, 2, 3]).ignore();
            let (): () = pipe.query_async(&mut con).await.unwrap();

            let server = RedisServer::new("127.0.0.1", redis.port()).auth(None, "secret");
            let mut transfer = server.begin_rdb().await.unwrap();
            assert!(
                transfer.server_version().starts_with(prefix),
                "{transfer:?}"
            );
            assert_eq!(transfer.replication_id().len(), 40);
            let rdb = fetch_all(&mut transfer).await.unwrap();
            match (diskless, transfer.framing()) {
                ("yes", Some(Framing::EofMark(_))) => {}
                ("no", Some(Framing::Length(n))) => assert_eq!(n, rdb.len() as u64),
                other => panic!("{version:?}: {other:?}"),
            }
            assert_eq!(transfer.received(), rdb.len() as u64);
            // The whole RDB, its checksum right, every key in it.
            let summary = verify_slice(&rdb).unwrap();
            assert_eq!(summary.rdb_version, rdb_version, "{version:?} {diskless}");
            assert_eq!(summary.counts.keys(), 2001, "{version:?} {diskless}");
            // The server goes on serving.
            let answer: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
            assert_eq!(answer, "PONG");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_and_permissions_are_auth_errors() {
    let redis = Redis::start_with(RedisOptions::default().password("secret"))
        .await
        .unwrap();
    let err = RedisServer::new("127.0.0.1", redis.port())
        .auth(None, "wrong")
        .begin_rdb()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("refused AUTH"), "{err}");

    // An ACL user that may read but not replicate.
    let mut con = redis.connection().await.unwrap();
    let (): () = redis::cmd("ACL")
        .arg(&["SETUSER", "reader", "on", ">pw", "~*", "+@read", "+info"])
        .query_async(&mut con)
        .await
        .unwrap();
    let err = RedisServer::new("127.0.0.1", redis.port())
        .auth(Some("reader".into()), "pw")
        .begin_rdb()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("NOPERM"), "{err}");

    // Nothing listening.
    let port = redis.port();
    drop(con);
    drop(redis);
    let err = RedisServer::new("127.0.0.1", port)
        .begin_rdb()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// What a fetch from a [`fake_master`] sending `sent` gives, with an idle
/// timeout where given.
async fn fetch_from_fake(
    sent: Vec<Vec<u8>>,
    then_close: bool,
    idle: Option<Duration>,
) -> Result<Vec<u8>, Error> {
    let port = fake_master(sent, then_close).await;
    let mut server = RedisServer::new("127.0.0.1", port);
    if let Some(idle) = idle {
        server = server.idle_timeout(idle);
    }
    let mut transfer = server.begin_rdb().await.unwrap();
    fetch_all(&mut transfer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_and_an_end_mark_split_across_reads_are_framed_exactly() {
    let rdb = small_rdb();
    let mark = b"abcdefghij0123456789abcdefghij0123456789";
    let mut stream = b"\n\n\n$EOF:".to_vec();
    stream.extend_from_slice(mark);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(&rdb);
    stream.extend_from_slice(mark);
    // Old servers' newlines after the mark.
    stream.extend_from_slice(b"\n\n");
    // Cut so that the mark is split, and in one place a single byte.
    let cut = stream.len() - 2 - 25;
    let pieces = vec![
        stream[..5].to_vec(),
        stream[5..cut].to_vec(),
        stream[cut..cut + 1].to_vec(),
        stream[cut + 1..].to_vec(),
    ];
    let port = fake_master(pieces, false).await;
    let mut transfer = RedisServer::new("127.0.0.1", port)
        .begin_rdb()
        .await
        .unwrap();
    assert_eq!(transfer.offset(), 42);
    let fetched = fetch_all(&mut transfer).await.unwrap();
    assert_eq!(fetched, rdb);
    assert_eq!(transfer.framing(), Some(Framing::EofMark(*mark)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_short_or_gone_quiet_is_an_error_never_a_short_rdb() {
    // Announced 1000 bytes, sent 12, closed.
    let sent = vec![b"$1000\r\n".to_vec(), small_rdb()[..12].to_vec()];
    let err = fetch_from_fake(sent, true, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::EndedEarly {
                received: 12,
                expected: Some(1000),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);

    // Diskless, closed before the end mark: the bytes so far are not an RDB.
    let mut stream = b"$EOF:abcdefghij0123456789abcdefghij0123456789\r\n".to_vec();
    stream.extend_from_slice(&small_rdb());
    let err = fetch_from_fake(vec![stream], true, None).await.unwrap_err();
    assert!(
        matches!(err, Error::EndedEarly { expected: None, .. }),
        "{err}"
    );

    // Silent after the preamble: the idle timeout, not a hang.
    let idle = Some(Duration::from_millis(300));
    let err = fetch_from_fake(vec![b"$1000\r\nREDIS".to_vec()], false, idle)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_redis_is_named_so() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).await;
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let err = RedisServer::new("127.0.0.1", port)
        .begin_rdb()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string()
            .contains("does not answer as a Redis server"),
        "{err}"
    );
}

/// rustls client settings trusting the CA in `ca_pem`.
fn trusting(ca_pem: &std::path::Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_pem).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_servers_certificate_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dr_testkit::make_certificates(dir.path()).unwrap();
    let tls_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let redis = Redis::start_with(
        RedisOptions::default()
            .setting("tls-port", tls_port.to_string())
            .setting("tls-cert-file", certs.cert.display().to_string())
            .setting("tls-key-file", certs.key.display().to_string())
            .setting("tls-auth-clients", "no"),
    )
    .await
    .unwrap();
    let mut con = redis.connection().await.unwrap();
    let (): () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();

    let server = RedisServer::new("127.0.0.1", tls_port)
        .tls(trusting(&certs.ca))
        .unwrap();
    let mut transfer = server.begin_rdb().await.unwrap();
    let rdb = fetch_all(&mut transfer).await.unwrap();
    assert_eq!(verify_slice(&rdb).unwrap().counts.keys(), 1);

    // A CA that did not sign the server's certificate.
    let err = RedisServer::new("127.0.0.1", tls_port)
        .tls(trusting(&dr_testkit::tls_fixture("other-ca.pem")))
        .unwrap()
        .begin_rdb()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(matches!(err, Error::Tls { .. }), "{err}");
}
