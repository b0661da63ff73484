//! Following real Redis 7.0 and 8.2 masters as a replica: a full
//! resynchronization (its RDB, then the stream), every write received as a
//! command with offsets that match the master's, acknowledgements that
//! count for `WAIT` only once sent, no listening port advertised, and a
//! reconnection that continues the history exactly where it stopped (or a
//! full resynchronization where it cannot).

use std::time::Duration;

use dr_redis::{HistoryPoint, RedisServer, Replication, StreamCommand, verify_slice};
use dr_testkit::{Redis, RedisOptions, RedisVersion};
use redis::aio::MultiplexedConnection;

async fn run(con: &mut MultiplexedConnection, args: &[&str]) -> redis::Value {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

async fn info(con: &mut MultiplexedConnection) -> String {
    redis::cmd("INFO")
        .arg("replication")
        .query_async(con)
        .await
        .unwrap()
}

fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_default()
        .trim()
}

/// Receives until the link's offset reaches the master's: every command.
async fn until_caught_up(
    link: &mut dr_redis::ReplicaLink,
    con: &mut MultiplexedConnection,
) -> Vec<StreamCommand> {
    let mut kept = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let master: u64 = field(&info(con).await, "master_repl_offset")
            .parse()
            .unwrap();
        if link.offset() >= master {
            assert_eq!(link.offset(), master);
            return kept;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} < {master}",
            link.offset()
        );
        let commands = tokio::time::timeout(Duration::from_secs(15), link.recv())
            .await
            .expect("the stream goes on")
            .unwrap();
        kept.extend(commands);
    }
}

/// The names of the data commands (not `PING`, `REPLCONF GETACK` or
/// `SELECT`, which the master sends as it needs).
fn names(commands: &[StreamCommand]) -> Vec<String> {
    commands
        .iter()
        .filter(|c| !c.is("PING") && !c.is("REPLCONF") && !c.is("SELECT"))
        .map(|c| String::from_utf8_lossy(c.name()).to_uppercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_followed_resumed_and_acknowledged() {
    for version in [RedisVersion::System, RedisVersion::Redis8] {
        let master = Redis::start_with(RedisOptions::default().version(version))
            .await
            .unwrap();
        let mut con = master.connection().await.unwrap();
        run(&mut con, &["SET", "before", "1"]).await;
        let server = RedisServer::new("127.0.0.1", master.port());

        // No point: a full resynchronization, its RDB, then the stream.
        let Replication::FullSync(mut sync) = server.replicate(None).await.unwrap() else {
            panic!("no point to continue from")
        };
        let mut rdb = Vec::new();
        while let Some(chunk) = sync.transfer().next_chunk().await.unwrap() {
            rdb.extend_from_slice(&chunk);
        }
        assert_eq!(verify_slice(&rdb).unwrap().counts.keys(), 1);
        let start = sync.point();
        let mut link = sync.into_link().await.unwrap();
        assert_eq!(link.point(), start);

        // The link is no replica anyone would promote: no listening port.
        let replication = info(&mut con).await;
        assert_eq!(
            field(&replication, "connected_slaves"),
            "1",
            "{replication}"
        );
        assert!(
            field(&replication, "slave0").contains("port=0"),
            "{replication}"
        );

        run(&mut con, &["SET", "k", "v"]).await;
        run(&mut con, &["INCR", "n"]).await;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg("a")
            .arg(1)
            .cmd("SET")
            .arg("b")
            .arg(2);
        let (): () = pipe.query_async(&mut con).await.unwrap();
        let got = until_caught_up(&mut link, &mut con).await;
        assert_eq!(
            names(&got),
            ["SET", "INCR", "MULTI", "SET", "SET", "EXEC"],
            "{version:?}"
        );
        let set = got.iter().find(|c| c.is("SET")).unwrap();
        assert_eq!(set.arg(1), Some(&b"k"[..]));
        // Offsets run on without a gap or an overlap.
        assert_eq!(got[0].offsets.start, start.offset);
        for pair in got.windows(2) {
            assert_eq!(pair[0].offsets.end, pair[1].offsets.start);
        }

        // Acknowledged only when told: WAIT counts the link then.
        let waited: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(200)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(waited, 0, "{version:?}: nothing acknowledged yet");
        link.ack(link.offset()).await.unwrap();
        let waited: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(waited, 1, "{version:?}");

        // Dropped and resumed: the history continues at the same offset.
        let point = link.point();
        drop(link);
        run(&mut con, &["SET", "while-away", "1"]).await;
        let Replication::Continue(mut link) = server.replicate(Some(&point)).await.unwrap() else {
            panic!("{version:?}: the backlog holds the point")
        };
        assert_eq!(link.point(), point);
        run(&mut con, &["DEL", "k"]).await;
        let got = until_caught_up(&mut link, &mut con).await;
        assert_eq!(names(&got), ["SET", "DEL"], "{version:?}");
        assert_eq!(got[0].offsets.start, point.offset);

        // A history the master does not know: a full resynchronization.
        let unknown = HistoryPoint {
            replication_id: "0".repeat(40),
            offset: 5,
        };
        assert!(matches!(
            server.replicate(Some(&unknown)).await.unwrap(),
            Replication::FullSync(_)
        ));
    }
}
