//! A peer on loopback that answers a replication handshake as a Redis
//! master would, then sends what a test gives it: for transfers that break
//! in ways a real server will not on demand.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A peer on loopback that answers the handshake as a Redis master would,
/// then sends `transfer` in pieces, pausing between them, then stays
/// silent or closes.
pub async fn fake_master(transfer: Vec<Vec<u8>>, then_close: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        // INFO, two REPLCONFs, PSYNC: four commands, each ending a request.
        let info = "# Server\r\nredis_version:7.0.99\r\n";
        let info = format!("${}\r\n{info}\r\n", info.len());
        let answers: [&[u8]; 3] = [info.as_bytes(), b"+OK\r\n", b"+OK\r\n"];
        let mut answered = 0;
        while answered < 4 {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
            // Each command is one array; answer each complete one.
            while let Some(end) = find_command_end(&seen) {
                seen.drain(..end);
                if answered < 3 {
                    socket.write_all(answers[answered]).await.unwrap();
                } else {
                    socket
                        .write_all(
                            b"\n\n+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 42\r\n",
                        )
                        .await
                        .unwrap();
                }
                answered += 1;
            }
        }
        for piece in transfer {
            socket.write_all(&piece).await.unwrap();
            socket.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        if !then_close {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    port
}

/// The end of the first complete RESP array of bulk strings in `data`.
pub fn find_command_end(data: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(data).ok()?;
    let count: usize = text.strip_prefix('*')?.split("\r\n").next()?.parse().ok()?;
    let mut at = text.find("\r\n")? + 2;
    for _ in 0..count {
        let line_end = at + text[at..].find("\r\n")?;
        let len: usize = text[at + 1..line_end].parse().ok()?;
        at = line_end + 2 + len + 2;
        if at > text.len() {
            return None;
        }
    }
    Some(at)
}

/// A small valid RDB (version 10, one key, checksum "not computed").
pub fn small_rdb() -> Vec<u8> {
    let mut rdb = b"REDIS0010\xfe\x00\x00\x01k\x01v\xff".to_vec();
    rdb.extend([0; 8]);
    rdb
}

/// The arguments of the complete command `data` begins with (as
/// [`find_command_end`] found it).
pub fn command_args(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split("\r\n").skip(1);
    let mut args = Vec::new();
    while let (Some(_len), Some(arg)) = (lines.next(), lines.next()) {
        args.push(arg.to_owned());
    }
    args
}
