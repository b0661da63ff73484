//! Config files as operators write them, and every way one can be wrong.

use std::path::Path;

use drkit::{Config, ErrorKind, Job, KeyCacheSetting, SecretSource, TlsMode};
use jiff::Timestamp;

/// Modelled on the GoMeet plan: PostgreSQL with RTO 30 minutes and RPO 15
/// minutes, a daily backup at 02:00 (its CronJob's `0 2 * * *`), a check
/// every six hours (`0 */6 * * *`), 30 days of dailies, backups in S3.
const GOMEET: &str = r#"
[repository]
location = "s3://gomeet-dr/backups/prod"
password = { file = "/etc/drkit/repository.pass" }

[repository.s3]
region = "ap-southeast-1"
endpoint = "https://minio.gomeet.svc:9000"
path_style = true

[[component]]
id = "postgres/gomeet_primary"
kind = "postgres"
objectives = { rto = "30m", rpo = "15m" }
retention = "daily=30,within=7d"
wal_archiving = true

[component.connection]
host = ["postgres-primary.gomeet.svc", "postgres-replica.gomeet.svc"]
port = 5432
user = "replicator"
dbname = "gomeet"
password = { env = "GOMEET_PG_PASSWORD" }
application_name = "drkit-gomeet"

[component.connection.tls]
mode = "verify-full"
ca_file = "/etc/drkit/pg-ca.pem"
cert_file = "/etc/drkit/pg-client.pem"
key_file = "/etc/drkit/pg-client.key"

[[component.schedule]]
job = "backup"
cron = "0 2 * * *"
timezone = "Asia/Jakarta"

[[component.schedule]]
job = "verify"
cron = "0 */6 * * *"

[agent]
listen = "0.0.0.0:9187"
prune = { cron = "30 3 * * sun", timezone = "Asia/Jakarta" }
retry = "30s"
"#;

/// A small installation: a local repository, PostgreSQL over its socket.
const LOCAL: &str = r#"
[repository]
location = "file:///var/lib/drkit/repo"
password = { command = ["systemd-creds", "cat", "drkit-repository"] }

[[component]]
id = "postgres/main"
kind = "postgres"
objectives = { rto = "< 4 hours", rpo = "< 1 hour" }
retention = "last=3,daily=7,weekly=4"
wal_archiving = false
connection = { host = "/run/postgresql", user = "postgres", tls = { mode = "disable" } }
schedule = [{ job = "backup", cron = "@hourly" }]

[[component]]
id = "postgres/analytics"
kind = "postgres"
objectives = { rto = "2h", rpo = "1d" }
retention = "daily=14"
wal_archiving = false
connection = { host = "10.0.0.7", user = "backup", tls = { mode = "require" } }
"#;

fn now() -> Timestamp {
    "2026-11-21T08:00:00Z".parse().unwrap()
}

#[test]
fn the_gomeet_plan() {
    let config = Config::from_toml(GOMEET, "gomeet.toml").unwrap();
    let repository = config.repository();
    assert_eq!(
        repository.location().to_string(),
        "s3://gomeet-dr/backups/prod"
    );
    let s3 = repository.s3().unwrap();
    assert_eq!(s3.region(), Some("ap-southeast-1"));
    assert_eq!(s3.endpoint(), Some("https://minio.gomeet.svc:9000"));
    assert!(s3.path_style());
    assert_eq!(
        repository.password(),
        &SecretSource::File("/etc/drkit/repository.pass".into())
    );

    let [primary] = config.components() else {
        panic!("one component")
    };
    assert_eq!(primary.id().as_str(), "postgres/gomeet_primary");
    assert_eq!(primary.kind(), "postgres");
    assert_eq!(primary.objectives().rto.to_string(), "30m");
    assert_eq!(primary.objectives().rpo.to_string(), "15m");
    assert_eq!(primary.retention().to_string(), "daily=30,within=7d");
    let jobs: Vec<_> = primary
        .schedules()
        .iter()
        .map(|s| (s.job(), s.schedule().to_string()))
        .collect();
    assert_eq!(
        jobs,
        [
            (Job::Backup, "0 2 * * * (Asia/Jakarta)".to_owned()),
            (Job::Verify, "0 */6 * * * (UTC)".to_owned())
        ]
    );
    let backup = primary.schedules()[0].schedule();
    assert_eq!(
        backup.next_after_timestamp(now()).unwrap().to_string(),
        "2026-11-22T02:00:00+07:00[Asia/Jakarta]"
    );

    let pg = primary.postgres().unwrap();
    assert!(pg.wal_archiving());
    assert_eq!(
        pg.hosts(),
        ["postgres-primary.gomeet.svc", "postgres-replica.gomeet.svc"]
    );
    assert_eq!(pg.port(), 5432);
    assert_eq!(pg.user(), "replicator");
    assert_eq!(pg.dbname(), Some("gomeet"));
    assert_eq!(pg.application_name(), "drkit-gomeet");
    assert_eq!(
        pg.password(),
        Some(&SecretSource::Env("GOMEET_PG_PASSWORD".into()))
    );
    assert_eq!(pg.tls().mode(), TlsMode::VerifyFull);
    assert_eq!(pg.tls().ca_file(), Some(Path::new("/etc/drkit/pg-ca.pem")));
    assert_eq!(
        pg.tls().client_cert(),
        Some((
            Path::new("/etc/drkit/pg-client.pem"),
            Path::new("/etc/drkit/pg-client.key")
        ))
    );
    let pg_config = pg.pg_config(Some(&drkit::Password::new("pw")));
    assert_eq!(pg_config.get_hosts().len(), 2);
    assert_eq!(pg_config.get_user(), Some("replicator"));
    assert_eq!(pg_config.get_dbname(), Some("gomeet"));
    assert_eq!(pg_config.get_password(), Some(&b"pw"[..]));
    assert_eq!(pg_config.get_application_name(), Some("drkit-gomeet"));
    assert_eq!(
        pg_config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );

    let agent = config.agent().unwrap();
    assert_eq!(agent.listen().to_string(), "0.0.0.0:9187");
    assert_eq!(agent.retry(), std::time::Duration::from_secs(30));
    // Unset: the defaults.
    assert_eq!(agent.refresh(), std::time::Duration::from_secs(30));
    assert_eq!(agent.shutdown_grace(), std::time::Duration::from_secs(300));
    assert_eq!(
        agent
            .prune()
            .next_after_timestamp(now())
            .unwrap()
            .to_string(),
        "2026-11-22T03:30:00+07:00[Asia/Jakarta]"
    );

    let plan = config.plan(now()).to_string();
    println!("{plan}");
    for expected in [
        "config gomeet.toml, next runs after 2026-11-21T08:00:00Z",
        "repository s3://gomeet-dr/backups/prod (region ap-southeast-1, endpoint https://minio.gomeet.svc:9000, path-style)",
        "password    from file /etc/drkit/repository.pass",
        "component postgres/gomeet_primary",
        "objectives  RTO 30m, RPO 15m",
        "retention   daily=30,within=7d",
        "tls verify-full, WAL archiving on",
        "password    from environment variable GOMEET_PG_PASSWORD",
        "next 2026-11-22T02:00:00+07:00[Asia/Jakarta]",
        "next 2026-11-21T12:00:00+00:00[UTC]",
        "agent listening on 0.0.0.0:9187",
        "next 2026-11-22T03:30:00+07:00[Asia/Jakarta]",
        "first after 30s, doubling; repository read every 30s; 5m for a running job on SIGTERM",
    ] {
        assert!(plan.contains(expected), "{expected:?} missing from\n{plan}");
    }
}

#[test]
fn a_local_installation() {
    let config = Config::from_toml(LOCAL, "local.toml").unwrap();
    assert_eq!(
        config.repository().location().to_string(),
        "/var/lib/drkit/repo"
    );
    assert!(config.agent().is_none());
    assert_eq!(config.components().len(), 2);
    let main = config.component(&"postgres/main".parse().unwrap()).unwrap();
    assert_eq!(main.objectives().rto.to_string(), "4h");
    let pg = main.postgres().unwrap();
    assert!(!pg.wal_archiving());
    assert_eq!(pg.port(), 5432);
    assert_eq!(pg.application_name(), "drkit");
    assert_eq!(
        pg.pg_config(None).get_ssl_mode(),
        tokio_postgres::config::SslMode::Disable
    );
    let analytics = &config.components()[1];
    assert!(analytics.schedules().is_empty());
    let plan = config.plan(now()).to_string();
    assert!(plan.contains("none (run by hand)"), "{plan}");
    assert!(
        plan.contains("next 2026-11-21T09:00:00+00:00[UTC]"),
        "{plan}"
    );
}

#[tokio::test]
async fn connections_resolve_passwords_and_tls_files() {
    let tls = dr_testkit::tls_fixture("");
    let text = format!(
        r#"
[repository]
location = "/srv/drkit"
password = {{ env = "DRKIT_REPOSITORY_PASSWORD" }}

[[component]]
id = "postgres/gomeet_primary"
kind = "postgres"
objectives = {{ rto = "30m", rpo = "15m" }}
retention = "daily=30"
wal_archiving = true
[component.connection]
host = "db.internal"
user = "replicator"
password = {{ env = "PGPASSWORD" }}
tls = {{ mode = "verify-ca", ca_file = "{ca}", cert_file = "{cert}", key_file = "{key}" }}

[[component]]
id = "postgres/other"
kind = "postgres"
objectives = {{ rto = "30m", rpo = "15m" }}
retention = "daily=30"
wal_archiving = false
connection = {{ host = "db.internal", user = "u", tls = {{ mode = "verify-full", ca_file = "{missing}" }} }}
"#,
        ca = tls.join("ca.pem").display(),
        cert = tls.join("client.pem").display(),
        key = tls.join("client.key").display(),
        missing = tls.join("absent.pem").display(),
    );
    let config = Config::from_toml(&text, "tls.toml").unwrap();
    let env = |name: &str| (name == "PGPASSWORD").then(|| "from-env".to_owned());
    let pg = config.components()[0].postgres().unwrap();
    let (pg_config, tls_config) = pg.resolve(env).await.unwrap();
    assert_eq!(pg_config.get_password(), Some(&b"from-env"[..]));
    assert_eq!(format!("{tls_config:?}"), "Tls(rustls::ClientConfig)");

    let err = config.components()[1]
        .postgres()
        .unwrap()
        .load_tls()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls);
    assert!(err.to_string().contains("postgres/other"), "{err}");
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("No such file")
    );

    let err = config
        .repository()
        .password()
        .resolve(env)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("DRKIT_REPOSITORY_PASSWORD"),
        "{err}"
    );
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drkit.toml");
    std::fs::write(&path, LOCAL).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.origin(), path.display().to_string());

    std::fs::write(&path, LOCAL.replace("\"2h\"", "\"2 fortnights\"")).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    let line = line_of(LOCAL, "\"2h\"");
    assert!(
        err.starts_with(&format!("{}:{line}:", path.display())),
        "{err}"
    );
    assert!(err.contains("component[1].objectives.rto"), "{err}");

    let err = Config::load(dir.path().join("absent.toml")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Read);
    assert!(err.to_string().contains("absent.toml"));
}

/// Replaces `from` (which must occur once) in the GoMeet file and parses it.
fn gomeet_with(from: &str, to: &str) -> drkit::Error {
    assert_eq!(GOMEET.matches(from).count(), 1, "{from}");
    let text = GOMEET.replace(from, to);
    Config::from_toml(&text, "gomeet.toml").unwrap_err()
}

/// The line of the file on which `needle` starts.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).unwrap();
    text[..at].matches('\n').count() + 1
}

/// Asserts the error is a config error in gomeet.toml at `line`, for `field`,
/// and its message has every one of `words`.
#[track_caller]
fn assert_error(err: &drkit::Error, line: usize, field: &str, words: &[&str]) {
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Config, "{text}");
    assert_eq!(err.field(), Some(field), "{text}");
    assert_eq!(err.line_column().map(|(l, _)| l), Some(line), "{text}");
    let prefix = format!("gomeet.toml:{line}:");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.contains(&format!(": {field}: ")), "{text}");
    for word in words {
        assert!(text.contains(word), "{word:?} missing from {text}");
    }
}

#[test]
fn an_unknown_field() {
    let err = gomeet_with(
        "wal_archiving = true",
        "wal_archiving = true\nretension = \"daily=1\"",
    );
    let line = line_of(GOMEET, "wal_archiving = true") + 1;
    assert_error(
        &err,
        line,
        "component[0].retension",
        &["unknown field `retension`", "expected one of"],
    );

    let err = gomeet_with("path_style = true", "path_style = true\nbucket = \"x\"");
    let line = line_of(GOMEET, "path_style = true") + 1;
    assert_error(
        &err,
        line,
        "repository.s3.bucket",
        &["unknown field `bucket`"],
    );
}

#[test]
fn the_key_cache_setting() {
    let gomeet = Config::from_toml(GOMEET, "gomeet.toml").unwrap();
    assert_eq!(gomeet.repository().key_cache(), &KeyCacheSetting::Default);
    let password = r#"password = { file = "/etc/drkit/repository.pass" }"#;
    let with = |value: &str| GOMEET.replace(password, &format!("{password}\nkey_cache = {value}"));
    let dir = Config::from_toml(&with(r#""/var/lib/postgresql/.cache/drkit/keys""#), "g").unwrap();
    assert_eq!(
        dir.repository().key_cache(),
        &KeyCacheSetting::Dir("/var/lib/postgresql/.cache/drkit/keys".into())
    );
    let off = Config::from_toml(&with("false"), "g").unwrap();
    assert_eq!(off.repository().key_cache(), &KeyCacheSetting::Off);

    let line = line_of(GOMEET, password) + 1;
    for (value, words) in [
        (
            r#""keys""#,
            &["\"keys\" is relative", "expected an absolute directory"][..],
        ),
        ("true", &["true is the default", "or false"][..]),
        ("7", &["invalid type", "expected an absolute directory"][..]),
    ] {
        let err = gomeet_with(password, &format!("{password}\nkey_cache = {value}"));
        assert_error(&err, line, "repository.key_cache", words);
    }
}

#[test]
fn a_bad_cron_expression() {
    let err = gomeet_with("cron = \"0 */6 * * *\"", "cron = \"0 */6 * *\"");
    let line = line_of(GOMEET, "cron = \"0 */6 * * *\"");
    assert_error(
        &err,
        line,
        "component[0].schedule[1].cron",
        &[
            "expected 5 fields",
            "expected a cron expression such as \"0 2 * * *\"",
        ],
    );
    let err = gomeet_with("cron = \"0 2 * * *\"", "cron = \"0 25 * * *\"");
    let line = line_of(GOMEET, "cron = \"0 2 * * *\"");
    assert_error(
        &err,
        line,
        "component[0].schedule[0].cron",
        &["hour 25 is out of range 0-23"],
    );
}

#[test]
fn a_bad_duration() {
    let err = gomeet_with("rpo = \"15m\"", "rpo = \"15 fortnights\"");
    let line = line_of(GOMEET, "rpo = \"15m\"");
    assert_error(
        &err,
        line,
        "component[0].objectives.rpo",
        &["unknown unit", "expected a duration such as \"15m\""],
    );
    // The second component's: the index counts.
    let text = format!(
        "{}\n[[component]]{}",
        GOMEET.split("[agent]").next().unwrap(),
        LOCAL
            .split("[[component]]")
            .nth(1)
            .unwrap()
            .replace("rto = \"< 4 hours\"", "rto = 30")
    );
    let err = Config::from_toml(&text, "gomeet.toml").unwrap_err();
    assert_error(
        &err,
        line_of(&text, "rto = 30"),
        "component[1].objectives.rto",
        &["invalid type: integer `30`", "a duration such as \"30m\""],
    );
    // Objectives have no defaults.
    let err = gomeet_with(
        "objectives = { rto = \"30m\", rpo = \"15m\" }",
        "objectives = { rto = \"30m\" }",
    );
    assert_error(
        &err,
        line_of(GOMEET, "objectives = "),
        "component[0].objectives",
        &["missing field `rpo`"],
    );
}

#[test]
fn a_bad_time_zone() {
    let err = gomeet_with(
        "timezone = \"Asia/Jakarta\"\n",
        "timezone = \"Asia/Djakarta City\"\n",
    );
    let line = line_of(GOMEET, "timezone = \"Asia/Jakarta\"");
    assert_error(
        &err,
        line,
        "component[0].schedule[0].timezone",
        &[
            "unknown time zone \"Asia/Djakarta City\"",
            "expected an IANA time zone",
        ],
    );
    let err = gomeet_with(
        "prune = { cron = \"30 3 * * sun\", timezone = \"Asia/Jakarta\" }",
        "prune = { cron = \"30 3 * * sun\", timezone = \"WIB\" }",
    );
    assert_error(
        &err,
        line_of(GOMEET, "prune = "),
        "agent.prune.timezone",
        &["unknown time zone \"WIB\""],
    );
}

#[test]
fn an_inline_password() {
    let err = gomeet_with(
        "password = { file = \"/etc/drkit/repository.pass\" }",
        "password = \"hunter2\"",
    );
    let line = line_of(GOMEET, "password = { file");
    assert_error(
        &err,
        line,
        "repository.password",
        &[
            "never written in the config file",
            "file =",
            "command =",
            "env =",
        ],
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let err = gomeet_with(
        "password = { env = \"GOMEET_PG_PASSWORD\" }",
        "password = \"s3cret\"",
    );
    assert_error(
        &err,
        line_of(GOMEET, "password = { env"),
        "component[0].connection.password",
        &["never written in the config file"],
    );
    assert!(!err.to_string().contains("s3cret"), "{err}");

    let err = gomeet_with(
        "password = { env = \"GOMEET_PG_PASSWORD\" }",
        "password = { env = \"GOMEET_PG_PASSWORD\", file = \"/x\" }",
    );
    assert_error(
        &err,
        line_of(GOMEET, "password = { env"),
        "component[0].connection.password",
        &[
            "more than one source",
            "exactly one of `file`, `command` or `env`",
        ],
    );
}

#[test]
fn a_duplicate_id() {
    let component = GOMEET
        .split("[agent]")
        .next()
        .unwrap()
        .split("[[component]]")
        .nth(1)
        .unwrap();
    // The same component twice, the agent table last.
    let second = format!(
        "{}[[component]]{component}[agent]{}",
        GOMEET.split("[agent]").next().unwrap(),
        GOMEET.split("[agent]").nth(1).unwrap()
    );
    let err = Config::from_toml(&second, "gomeet.toml").unwrap_err();
    let second_id = second.rfind("id = \"postgres/gomeet_primary\"").unwrap();
    let line = second[..second_id].matches('\n').count() + 1;
    assert_error(
        &err,
        line,
        "component[1].id",
        &["duplicate component id \"postgres/gomeet_primary\", also component[0]"],
    );
}

#[test]
fn an_unknown_kind() {
    let err = gomeet_with(
        "id = \"postgres/gomeet_primary\"\nkind = \"postgres\"",
        "id = \"memcached/gomeet_cache\"\nkind = \"memcached\"",
    );
    let line = line_of(GOMEET, "kind = \"postgres\"");
    assert_error(
        &err,
        line,
        "component[0].kind",
        &[
            "unknown component kind \"memcached\"",
            "expected one of [postgres, postgres-dump, redis, redis-cluster, kubernetes, livekit]",
        ],
    );
    // A kind the id does not have.
    let err = gomeet_with(
        "id = \"postgres/gomeet_primary\"",
        "id = \"redis/gomeet_primary\"",
    );
    assert_error(
        &err,
        line,
        "component[0].kind",
        &[
            "the id \"redis/gomeet_primary\" is of kind \"redis\"",
            "start with \"postgres/\"",
        ],
    );
}

#[test]
fn settings_that_contradict_each_other() {
    let err = gomeet_with("ca_file = \"/etc/drkit/pg-ca.pem\"\n", "");
    assert_error(
        &err,
        line_of(GOMEET, "[component.connection.tls]"),
        "component[0].connection.tls",
        &["mode \"verify-full\" checks the server's certificate against ca_file"],
    );
    let err = gomeet_with("key_file = \"/etc/drkit/pg-client.key\"", "");
    assert_error(
        &err,
        line_of(GOMEET, "[component.connection.tls]"),
        "component[0].connection.tls",
        &["expected both or neither"],
    );
    let err = gomeet_with("mode = \"verify-full\"", "mode = \"verify-host\"");
    assert_error(
        &err,
        line_of(GOMEET, "mode = \"verify-full\""),
        "component[0].connection.tls.mode",
        &["expected a TLS mode"],
    );
    let err = gomeet_with(
        "location = \"s3://gomeet-dr/backups/prod\"",
        "location = \"/srv/drkit\"",
    );
    assert_error(
        &err,
        line_of(GOMEET, "[repository.s3]"),
        "repository.s3",
        &["expected them only with an s3:// location"],
    );
    let err = gomeet_with("wal_archiving = true\n", "");
    assert_error(
        &err,
        line_of(GOMEET, "[[component]]"),
        "component[0].wal_archiving",
        &["missing field `wal_archiving`"],
    );
    let err = gomeet_with("retention = \"daily=30,within=7d\"", "retention = \"\"");
    assert_error(
        &err,
        line_of(GOMEET, "retention ="),
        "component[0].retention",
        &["empty", "expected a retention policy"],
    );
    let err = gomeet_with("job = \"verify\"", "job = \"restore\"");
    assert_error(
        &err,
        line_of(GOMEET, "job = \"verify\""),
        "component[0].schedule[1].job",
        &["\"backup\", \"verify\" or \"restore-test\""],
    );
    let err = gomeet_with("listen = \"0.0.0.0:9187\"", "listen = \"localhost\"");
    assert_error(
        &err,
        line_of(GOMEET, "listen ="),
        "agent.listen",
        &["an address and port"],
    );
    for (wrong, field) in [
        ("retry = \"soon\"", "agent.retry"),
        ("retry = \"0s\"", "agent.retry"),
        ("shutdown_grace = \"5 fortnights\"", "agent.shutdown_grace"),
    ] {
        let err = gomeet_with("retry = \"30s\"", wrong);
        assert_error(
            &err,
            line_of(GOMEET, "retry ="),
            field,
            &["expected a duration"],
        );
    }

    let socket_tls = LOCAL.replace(
        "tls = { mode = \"disable\" }",
        "tls = { mode = \"require\" }",
    );
    let err = Config::from_toml(&socket_tls, "gomeet.toml").unwrap_err();
    assert_error(
        &err,
        line_of(&socket_tls, "host = \"/run/postgresql\""),
        "component[0].connection.tls",
        &["Unix socket"],
    );
}

#[test]
fn no_components_and_bad_toml() {
    let text = GOMEET.split("[[component]]").next().unwrap();
    let err = Config::from_toml(text, "gomeet.toml").unwrap_err();
    assert_error(
        &err,
        1,
        "component",
        &["expected at least one [[component]]"],
    );

    let err = gomeet_with("port = 5432", "port = 5432 5433");
    let line = line_of(GOMEET, "port = 5432");
    assert_eq!(err.line_column().map(|(l, _)| l), Some(line), "{err}");
    assert!(
        err.to_string().starts_with(&format!("gomeet.toml:{line}:")),
        "{err}"
    );

    let err = gomeet_with("port = 5432", "port = 65536");
    assert_error(
        &err,
        line_of(GOMEET, "port = 5432"),
        "component[0].connection.port",
        &["65536"],
    );
}

/// A `postgres-dump` component as the README writes it.
#[test]
fn a_dump_component_reads_as_the_readme_writes_it() {
    let text = r#"
[repository]
location = "/var/lib/drkit/repo"
password = { file = "/etc/drkit/repository.pass" }

[[component]]
id = "postgres-dump/gomeet"
kind = "postgres-dump"
objectives = { rto = "1h", rpo = "24h" }
retention = "within=30d"
databases = ["gomeet_primary", "gomeet_shard_1"]
connection = { host = "10.0.0.5", user = "backup", password = { env = "PGPASSWORD_BACKUP" }, tls = { mode = "require" } }
schedule = [{ job = "backup", cron = "0 2 * * *" }, { job = "restore-test", cron = "0 4 1 * *" }]
"#;
    let config = Config::from_toml(text, "drkit.toml").unwrap();
    let dump = &config.components()[0];
    assert!(dump.postgres().is_none());
    let settings = dump.postgres_dump().unwrap();
    assert_eq!(
        settings.databases(),
        &dr_postgres::Databases::Named(vec!["gomeet_primary".into(), "gomeet_shard_1".into()])
    );
    assert!(settings.globals());
    assert_eq!(
        dump.connection().map(drkit::PostgresSettings::user),
        Some("backup")
    );
    assert_eq!(dump.schedules()[1].job(), drkit::Job::RestoreTest);
    let plan = config.plan(now()).to_string();
    assert!(
        plan.contains("pg_dump of gomeet_primary, gomeet_shard_1 and the globals"),
        "{plan}"
    );
}

#[test]
fn a_failover_table_names_the_members_and_its_mistakes() {
    let table = r#"
[component.failover]
members = [
  { name = "pg-1", host = "10.0.0.1" },
  { name = "pg-2", host = "10.0.0.2", port = 5433, priority = 10 },
  { name = "pg-3", host = "10.0.0.3", never_promote = true },
]
loss_limit = "1MB"
fence_command = ["/usr/local/sbin/fence", "{member}"]
rewire_command = ["/usr/local/sbin/repoint", "{member}", "{address}"]
"#;
    let with = |table: &str| {
        let text = GOMEET.replacen(
            "\n[[component.schedule]]",
            &format!("{table}\n[[component.schedule]]"),
            1,
        );
        assert_ne!(text, GOMEET);
        (Config::from_toml(&text, "gomeet.toml"), text)
    };
    let (config, _) = with(table);
    let config = config.unwrap();
    let failover = config.components()[0]
        .postgres()
        .unwrap()
        .failover()
        .unwrap();
    let names: Vec<&str> = failover.members().iter().map(|m| m.name()).collect();
    assert_eq!(names, ["pg-1", "pg-2", "pg-3"]);
    assert_eq!(failover.members()[1].address(), "10.0.0.2:5433");
    assert_eq!(
        failover.loss_limit(),
        drkit::LossLimitSetting::Bytes(1 << 20)
    );
    assert_eq!(failover.fence_command().unwrap()[1], "{member}");
    assert_eq!(failover.rewire_command().unwrap()[2], "{address}");

    for (change, words) in [
        (
            ("loss_limit = \"1MB\"", "loss_limit = \"a lot\""),
            "expected \"rpo\"",
        ),
        (
            (
                "{ name = \"pg-2\", host = \"10.0.0.2\", port = 5433, priority = 10 }",
                "{ name = \"pg-1\", host = \"10.0.0.2\" }",
            ),
            "two members are named \"pg-1\"",
        ),
        (
            ("[\"/usr/local/sbin/fence\", \"{member}\"]", "[]"),
            "an empty fence_command",
        ),
        (
            (
                "[\"/usr/local/sbin/repoint\", \"{member}\", \"{address}\"]",
                "[\"\"]",
            ),
            "an empty rewire_command",
        ),
    ] {
        let (result, text) = with(&table.replace(change.0, change.1));
        let err = result.unwrap_err();
        assert_error(
            &err,
            line_of(&text, "[component.failover]"),
            "component[0].failover",
            &[words],
        );
    }
    let automatic = "automatic = { interval = \"1s\", timeout = \"1s\", failures = 3 }";
    let (config, _) = with(&format!("{table}{automatic}\n"));
    let config = config.unwrap();
    let failover = config.components()[0]
        .postgres()
        .unwrap()
        .failover()
        .unwrap();
    assert_eq!(failover.automatic().unwrap().failures, 3);
    let (result, text) = with(&table.replace(
        "fence_command = [\"/usr/local/sbin/fence\", \"{member}\"]",
        automatic,
    ));
    assert_error(
        &result.unwrap_err(),
        line_of(&text, "[component.failover]"),
        "component[0].failover",
        &["automatic failover without a fence_command"],
    );
    let (result, _) = with(&table.replace("loss_limit", "lost_limit"));
    assert!(result.unwrap_err().to_string().contains("lost_limit"));
}

/// GoMeet's Redis: a standalone session store and the cluster, snapshotted
/// every six hours (`0 */6 * * *`), kept 7 days.
const REDIS: &str = r#"
[repository]
location = "/var/lib/drkit/repo"
password = { file = "/etc/drkit/repository.pass" }

[[component]]
id = "redis/sessions"
kind = "redis"
objectives = { rto = "5m", rpo = "1m" }
retention = "within=7d"
schedule = [{ job = "backup", cron = "0 */6 * * *" }, { job = "verify", cron = "30 */6 * * *" }]

[component.redis]
address = "redis-sessions.gomeet.svc:6379"
user = "backup"
password = { env = "REDIS_PASSWORD" }
mode = "logical"
tls = { mode = "verify-full", ca_file = "/etc/drkit/redis-ca.pem" }

[[component]]
id = "redis-cluster/gomeet"
kind = "redis-cluster"
objectives = { rto = "5m", rpo = "1m" }
retention = "within=7d"
schedule = [{ job = "backup", cron = "0 */6 * * *" }]

[component.redis]
seeds = ["10.0.1.10:7000", "10.0.1.11:7000"]
pause_writes = "10s"
tls = { mode = "disable" }
"#;

#[test]
fn redis_components() {
    let config = Config::from_toml(REDIS, "gomeet.toml").unwrap();
    let sessions = config.components()[0].redis().unwrap();
    assert!(!sessions.is_cluster());
    assert_eq!(sessions.addresses(), ["redis-sessions.gomeet.svc:6379"]);
    assert_eq!(sessions.user(), Some("backup"));
    assert_eq!(sessions.mode(), dr_redis::SnapshotMode::Logical);
    assert!(matches!(
        sessions.tls(),
        drkit::RedisTls::VerifyFull {
            client_cert: None,
            ..
        }
    ));
    let cluster = config.components()[1].redis().unwrap();
    assert!(cluster.is_cluster());
    assert_eq!(cluster.addresses().len(), 2);
    assert_eq!(
        cluster.pause_writes(),
        Some(std::time::Duration::from_secs(10))
    );
    assert!(config.components()[1].connection().is_none());
    let plan = config.plan(now()).to_string();
    assert!(
        plan.contains("logical (SCAN, DUMP) snapshots, user backup, tls verify-full"),
        "{plan}"
    );
    assert!(plan.contains("writes paused up to 10s"), "{plan}");

    let wrong = |from: &str, to: &str| {
        assert_eq!(REDIS.matches(from).count(), 1, "{from}");
        Config::from_toml(&REDIS.replace(from, to), "gomeet.toml").unwrap_err()
    };
    let err = wrong(
        "seeds = [\"10.0.1.10:7000\", \"10.0.1.11:7000\"]",
        "address = \"10.0.1.10:7000\"",
    );
    assert!(
        err.to_string().contains("component[1].redis.address"),
        "{err}"
    );
    assert!(err.to_string().contains("expected `seeds`"), "{err}");
    let err = wrong(
        "address = \"redis-sessions.gomeet.svc:6379\"",
        "address = \"redis-sessions\"",
    );
    assert!(err.to_string().contains("expected host:port"), "{err}");
    let err = wrong("mode = \"logical\"", "mode = \"aof\"");
    assert!(
        err.to_string()
            .contains("expected \"replication\" or \"logical\""),
        "{err}"
    );
    let err = wrong(
        "tls = { mode = \"disable\" }",
        "tls = { mode = \"require\" }",
    );
    assert!(
        err.to_string()
            .contains("expected \"disable\" or \"verify-full\""),
        "{err}"
    );
    let err = wrong(
        "schedule = [{ job = \"backup\", cron = \"0 */6 * * *\" }]\n",
        "schedule = [{ job = \"restore-test\", cron = \"0 */6 * * *\" }]\n",
    );
    assert!(
        err.to_string()
            .contains("restore tests into a scratch server are for PostgreSQL"),
        "{err}"
    );
    let err = wrong(
        "pause_writes = \"10s\"\n",
        "pause_writes = \"10s\"\nwal_archiving = true\n",
    );
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = wrong(
        "[component.redis]\nseeds",
        "connection = { host = \"x\", user = \"u\", tls = { mode = \"disable\" } }\n[component.redis]\nseeds",
    );
    assert!(
        err.to_string()
            .contains("`connection` is for PostgreSQL components"),
        "{err}"
    );
}

/// A `redis` component's `[component.failover]`: members on port 6379 by
/// default, one host each; none on a Cluster.
#[test]
fn a_redis_failover_table() {
    let failover = "\n[component.failover]\nmembers = [\n  { name = \"r-0\", host = \"10.0.0.5\" },\n  { name = \"r-1\", host = \"10.0.0.6\", port = 6380 },\n]\nloss_limit = \"rpo\"\n";
    let with = |at: &str, table: &str| {
        assert_eq!(REDIS.matches(at).count(), 1, "{at}");
        REDIS.replace(at, &format!("{at}{table}"))
    };
    let standalone = "tls = { mode = \"verify-full\", ca_file = \"/etc/drkit/redis-ca.pem\" }\n";
    let config = Config::from_toml(&with(standalone, failover), "gomeet.toml").unwrap();
    let settings = config.components()[0].redis().unwrap().failover().unwrap();
    let addresses: Vec<String> = settings.members().iter().map(|m| m.address()).collect();
    assert_eq!(addresses, ["10.0.0.5:6379", "10.0.0.6:6380"]);
    assert_eq!(settings.loss_limit(), drkit::LossLimitSetting::Rpo);
    assert!(settings.automatic().is_none());

    let two_hosts = failover.replace("host = \"10.0.0.5\"", "host = [\"10.0.0.5\", \"10.0.0.7\"]");
    let err = Config::from_toml(&with(standalone, &two_hosts), "gomeet.toml").unwrap_err();
    assert!(err.to_string().contains("component[0].failover"), "{err}");
    assert!(
        err.to_string().contains("expected one host for each"),
        "{err}"
    );
    let cluster = "tls = { mode = \"disable\" }\n";
    let err = Config::from_toml(&with(cluster, failover), "gomeet.toml").unwrap_err();
    assert!(err.to_string().contains("component[1].failover"), "{err}");
    assert!(
        err.to_string()
            .contains("`failover` is for redis components"),
        "{err}"
    );
    let bad_limit = failover.replace("\"rpo\"", "\"lots\"");
    let err = Config::from_toml(&with(standalone, &bad_limit), "gomeet.toml").unwrap_err();
    assert!(
        err.to_string().contains("a size of replication stream"),
        "{err}"
    );
}

/// The seeds' cluster objects: the LiveKit namespace from the production
/// context, and every namespace but the system's from inside the cluster.
const KUBERNETES: &str = r#"
[repository]
location = "/var/lib/drkit/repo"
password = { file = "/etc/drkit/repository.pass" }

[[component]]
id = "kubernetes/livekit"
kind = "kubernetes"
objectives = { rto = "30m", rpo = "24h" }
retention = "daily=14"
schedule = [{ job = "backup", cron = "0 1 * * *" }, { job = "verify", cron = "0 7 * * *" }]

[component.kubernetes]
kubeconfig = "/etc/drkit/kubeconfig"
context = "prod"
namespaces = ["livekit"]
kinds = ["deployments.apps", "configmaps", "rooms.livekit.io"]
labels = "app.kubernetes.io/part-of=livekit"
names = { configmaps = ["livekit-config"] }
secrets = true

[[component]]
id = "kubernetes/everything"
kind = "kubernetes"
objectives = { rto = "1h", rpo = "24h" }
retention = "daily=7"

[component.kubernetes]
exclude_namespaces = ["kube-system"]
exclude_kinds = ["events"]
cluster_scoped = "include"
"#;

#[test]
fn kubernetes_components() {
    let config = Config::from_toml(KUBERNETES, "gomeet.toml").unwrap();
    let livekit = config.components()[0].kubernetes().unwrap();
    assert_eq!(
        livekit.kubeconfig(),
        Some(Path::new("/etc/drkit/kubeconfig"))
    );
    assert_eq!(livekit.context(), Some("prod"));
    let filter = livekit.filter();
    assert_eq!(
        filter.include_namespaces.iter().collect::<Vec<_>>(),
        ["livekit"]
    );
    assert_eq!(filter.include_kinds.len(), 3);
    assert_eq!(
        filter.labels.as_deref(),
        Some("app.kubernetes.io/part-of=livekit")
    );
    assert_eq!(filter.only_names.len(), 1);
    assert_eq!(filter.only_names[0].0, "configmaps");
    assert!(filter.secrets);
    assert_eq!(filter.cluster_scoped, dr_k8s::ClusterScoped::Auto);
    assert_eq!(config.components()[0].schedules()[1].job(), Job::Verify);
    assert!(config.components()[0].connection().is_none());
    assert!(config.components()[0].redis().is_none());

    let everything = config.components()[1].kubernetes().unwrap();
    assert_eq!(everything.kubeconfig(), None);
    assert_eq!(everything.context(), None);
    let filter = everything.filter();
    assert!(filter.include_namespaces.is_empty());
    assert!(filter.exclude_namespaces.contains("kube-system"));
    assert_eq!(filter.exclude_kinds, ["events"]);
    assert_eq!(filter.cluster_scoped, dr_k8s::ClusterScoped::Include);
    assert!(!filter.secrets);

    let plan = config.plan(now()).to_string();
    assert!(
        plan.contains("context prod of /etc/drkit/kubeconfig"),
        "{plan}"
    );
    assert!(
        plan.contains("namespaces livekit; only deployments.apps"),
        "{plan}"
    );
    assert!(plan.contains("the cluster drkit runs in"), "{plan}");
    assert!(plan.contains("not kube-system; no events"), "{plan}");
}

#[test]
fn kubernetes_components_and_their_mistakes() {
    let wrong = |from: &str, to: &str| {
        assert_eq!(KUBERNETES.matches(from).count(), 1, "{from}");
        Config::from_toml(&KUBERNETES.replace(from, to), "gomeet.toml").unwrap_err()
    };
    let table = line_of(KUBERNETES, "[component.kubernetes]\nkubeconfig");
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "kubeconfig = \"/etc/drkit/kubeconfig\"",
            "kubeconfig = \"kubeconfig\"",
            "component[0].kubernetes.kubeconfig",
            &["is relative", "expected an absolute path"],
        ),
        (
            "kubeconfig = \"/etc/drkit/kubeconfig\"\n",
            "",
            "component[0].kubernetes.context",
            &["a context of which kubeconfig?"],
        ),
        (
            "namespaces = [\"livekit\"]",
            "namespaces = [\"LiveKit\"]",
            "component[0].kubernetes.namespaces",
            &["\"LiveKit\" is not a namespace name"],
        ),
        (
            "namespaces = [\"livekit\"]",
            "namespaces = [\"livekit\"]\nexclude_namespaces = [\"livekit\"]",
            "component[0].kubernetes.exclude_namespaces",
            &["both taken (namespaces) and excluded"],
        ),
        (
            "\"rooms.livekit.io\"]",
            "\"rooms livekit\"]",
            "component[0].kubernetes.kinds",
            &["\"rooms livekit\" is not a resource"],
        ),
        (
            "labels = \"app.kubernetes.io/part-of=livekit\"",
            "labels = \" \"",
            "component[0].kubernetes.labels",
            &["an empty selector"],
        ),
        (
            "names = { configmaps = [\"livekit-config\"] }",
            "names = { configmaps = [] }",
            "component[0].kubernetes.names.configmaps",
            &["expected the names of the objects"],
        ),
        (
            "cluster_scoped = \"include\"",
            "cluster_scoped = \"all\"",
            "component[1].kubernetes.cluster_scoped",
            &["\"all\"; expected \"auto\", \"include\" or \"exclude\""],
        ),
    ];
    for (from, to, field, words) in cases {
        let err = wrong(from, to);
        assert_eq!(err.field(), Some(*field), "{err}");
        for word in *words {
            assert!(
                err.to_string().contains(word),
                "{word:?} missing from {err}"
            );
        }
    }
    // Errors point at the table.
    let err = wrong(
        "kubeconfig = \"/etc/drkit/kubeconfig\"",
        "kubeconfig = \"kubeconfig\"",
    );
    assert_eq!(err.line_column().map(|(l, _)| l), Some(table), "{err}");

    // Unknown fields are refused, in the table and beside it.
    let err = wrong("secrets = true", "secrets = true\nsecret = true");
    assert_eq!(err.field(), Some("component[0].kubernetes.secret"), "{err}");
    assert!(err.to_string().contains("unknown field `secret`"), "{err}");
    let err = wrong("secrets = true", "secrets = \"yes\"");
    assert_eq!(
        err.field(),
        Some("component[0].kubernetes.secrets"),
        "{err}"
    );

    // No scratch server to restore-test into, no failover, no other kind's fields.
    let err = wrong(
        "{ job = \"verify\", cron = \"0 7 * * *\" }",
        "{ job = \"restore-test\", cron = \"0 7 * * *\" }",
    );
    assert_eq!(err.field(), Some("component[0].schedule"), "{err}");
    assert!(
        err.to_string()
            .contains("restore tests into a scratch server are for PostgreSQL"),
        "{err}"
    );
    let err = wrong(
        "retention = \"daily=7\"\n",
        "retention = \"daily=7\"\nwal_archiving = true\n",
    );
    assert_eq!(err.field(), Some("component[1].wal_archiving"), "{err}");
    assert!(
        err.to_string()
            .contains("a kubernetes component has [component.kubernetes]"),
        "{err}"
    );
    let err = wrong(
        "retention = \"daily=7\"\n",
        "retention = \"daily=7\"\nredis = { address = \"r:6379\", tls = { mode = \"disable\" } }\n",
    );
    assert_eq!(err.field(), Some("component[1].redis"), "{err}");
    let err = wrong(
        "retention = \"daily=7\"\n",
        "retention = \"daily=7\"\nfailover = { members = [], loss_limit = \"0\" }\n",
    );
    assert_eq!(err.field(), Some("component[1].failover"), "{err}");
    assert!(
        err.to_string().contains("restored, not failed over"),
        "{err}"
    );
    // The table is required, and only for this kind.
    let err = wrong(
        "\n[component.kubernetes]\nexclude_namespaces = [\"kube-system\"]\nexclude_kinds = [\"events\"]\ncluster_scoped = \"include\"\n",
        "\n",
    );
    assert_eq!(err.field(), Some("component[1].kubernetes"), "{err}");
    assert!(
        err.to_string().contains("missing table `kubernetes`"),
        "{err}"
    );
    let err = gomeet_with(
        "wal_archiving = true",
        "wal_archiving = true\nkubernetes = { namespaces = [\"db\"] }",
    );
    assert_eq!(err.field(), Some("component[0].kubernetes"), "{err}");
    assert!(
        err.to_string()
            .contains("`kubernetes` is for kubernetes components, not postgres"),
        "{err}"
    );
}

#[test]
fn the_agents_lease() {
    let with_lease = |lease: &str| {
        let text = format!("{GOMEET}\n[agent.lease]\n{lease}\n");
        Config::from_toml(&text, "gomeet.toml")
    };
    let config = with_lease("namespace = \"drkit\"\nname = \"drkit-agent\"").unwrap();
    let lease = config.agent().unwrap().lease().unwrap();
    assert_eq!((lease.namespace(), lease.name()), ("drkit", "drkit-agent"));
    assert_eq!(lease.kubeconfig(), None);
    assert_eq!(lease.duration(), std::time::Duration::from_secs(15));
    let config = with_lease(
        "namespace = \"drkit\"\nname = \"drkit-agent\"\nkubeconfig = \"/etc/drkit/kubeconfig\"\n\
         context = \"prod\"\nduration = \"30s\"",
    )
    .unwrap();
    let lease = config.agent().unwrap().lease().unwrap();
    assert_eq!(lease.context(), Some("prod"));
    assert_eq!(lease.duration(), std::time::Duration::from_secs(30));
    assert!(
        Config::from_toml(GOMEET, "gomeet.toml")
            .unwrap()
            .agent()
            .unwrap()
            .lease()
            .is_none()
    );

    let cases: &[(&str, &str, &str)] = &[
        (
            "namespace = \"drkit\"",
            "agent.lease",
            "missing field `name`",
        ),
        (
            "namespace = \"drkit\"\nname = \"Drkit Agent\"",
            "agent.lease.name",
            "is not a Lease name",
        ),
        (
            "namespace = \"dr_kit\"\nname = \"drkit-agent\"",
            "agent.lease.namespace",
            "is not a namespace name",
        ),
        (
            "namespace = \"drkit\"\nname = \"drkit-agent\"\ncontext = \"prod\"",
            "agent.lease.context",
            "a context of which kubeconfig?",
        ),
        (
            "namespace = \"drkit\"\nname = \"drkit-agent\"\nduration = \"2s\"",
            "agent.lease.duration",
            "expected at least \"3s\"",
        ),
        (
            "namespace = \"drkit\"\nname = \"drkit-agent\"\nholder = \"me\"",
            "agent.lease.holder",
            "unknown field `holder`",
        ),
    ];
    for (lease, field, words) in cases {
        let err = with_lease(lease).unwrap_err();
        assert_eq!(err.field(), Some(*field), "{err}");
        assert!(
            err.to_string().contains(words),
            "{words:?} missing from {err}"
        );
    }
}
