//! What the tests of the `drkit` binary share: a config file with its
//! repository and password files, and running the binary.
#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

pub(crate) mod agent;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_drkit");
pub(crate) const PASSWORD: &str = "drkit-cli-password";
pub(crate) const COMPONENT: &str = "postgres/main";

/// Gives a tree to the user the server runs as (the tests run as root).
pub(crate) fn give_tree(owner: (u32, u32), path: &Path) {
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            give_tree(owner, &entry.unwrap().path());
        }
    }
}

pub(crate) fn owner_of(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

/// A config file, its repository directory and password file, all usable by
/// the server's user; and the directory the binary, run by the test,
/// caches keys under (its `XDG_CACHE_HOME`), apart so that the test's user
/// keeps it when the rest is given to the server's.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) repo: PathBuf,
    pub(crate) cache_home: tempfile::TempDir,
}

impl Setup {
    /// A local repository (not yet created) and one PostgreSQL component on
    /// `port` with these objectives.
    pub(crate) fn new(port: u16, pg_password_text: &str, objectives: &str) -> Self {
        Self::with_components(|dir| {
            let pg_password = dir.join("pg.pass");
            std::fs::write(&pg_password, pg_password_text).unwrap();
            format!(
                r#"[[component]]
id = "{COMPONENT}"
kind = "postgres"
objectives = {objectives}
retention = "last=3"
wal_archiving = true

[component.connection]
host = "127.0.0.1"
port = {port}
user = "postgres"
password = {{ file = "{pg_password}" }}
tls = {{ mode = "disable" }}
"#,
                pg_password = pg_password.display(),
            )
        })
    }

    /// A local repository (not yet created) and the components that
    /// `components` writes, given the setup's directory.
    pub(crate) fn with_components(components: impl FnOnce(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let repo = dir.path().join("repo");
        let password_file = dir.path().join("repository.pass");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let components = components(dir.path());
        let config = dir.path().join("drkit.toml");
        std::fs::write(
            &config,
            format!(
                "[repository]\nlocation = \"{repo}\"\npassword = {{ file = \"{password_file}\" }}\n\n\
                 {components}",
                repo = repo.display(),
                password_file = password_file.display(),
            ),
        )
        .unwrap();
        Self {
            dir,
            config,
            repo,
            cache_home: tempfile::tempdir().unwrap(),
        }
    }

    /// A config for the primary `primary` with one streaming replica: the
    /// component connects to the primary, and its `[component.failover]`
    /// names both (`pg-1` the primary, `pg-2` the replica); `rest` gives
    /// the lines after it (the table's others, later tables) from the
    /// setup's directory.
    pub(crate) fn cluster(
        primary: &dr_testkit::Postgres,
        replica: &dr_testkit::Postgres,
        rest: impl FnOnce(&Path) -> String,
    ) -> Self {
        let setup = Self::new(
            primary.port(),
            primary.password(),
            r#"{ rto = "5m", rpo = "1m" }"#,
        );
        let rest = rest(setup.dir.path());
        let mut config = std::fs::read_to_string(&setup.config).unwrap();
        config.push_str(&format!(
            "\n[component.failover]\nmembers = [\n  \
             {{ name = \"pg-1\", host = \"127.0.0.1\", port = {p} }},\n  \
             {{ name = \"pg-2\", host = \"127.0.0.1\", port = {r} }},\n]\n{rest}\n",
            p = primary.port(),
            r = replica.port(),
        ));
        std::fs::write(&setup.config, config).unwrap();
        setup
    }

    /// Replaces the config's `[repository]` table with `table`.
    pub(crate) fn set_repository(&self, table: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let rest = &text[text.find("[[component]]").unwrap()..];
        std::fs::write(&self.config, format!("{table}\n\n{rest}")).unwrap();
    }

    /// Puts the repository on the S3 server `s3`, under `prefix`; returns
    /// the environment that gives its credentials (the standard chain).
    pub(crate) fn use_s3<'a>(
        &self,
        s3: &'a dr_testkit::S3,
        prefix: &str,
    ) -> [(&'static str, &'a str); 2] {
        self.set_repository(&format!(
            "[repository]\nlocation = \"s3://{bucket}/{prefix}\"\npassword = {{ file = \"{pass}\" }}\n\n\
             [repository.s3]\nregion = \"{region}\"\nendpoint = \"{endpoint}\"\npath_style = true",
            bucket = s3.bucket(),
            pass = self.dir.path().join("repository.pass").display(),
            region = s3.region(),
            endpoint = s3.endpoint(),
        ));
        [
            ("AWS_ACCESS_KEY_ID", s3.access_key_id()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key()),
        ]
    }

    /// Runs `drkit --config <file> <args>`.
    pub(crate) async fn drkit(&self, args: &[&str]) -> Output {
        self.drkit_with(args, &[]).await
    }

    /// Runs `drkit --config <file> <args>` with more environment variables.
    pub(crate) async fn drkit_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        tokio::process::Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("DRKIT_CONFIG")
            .env_remove("DRKIT_KEY_CACHE")
            .env("XDG_CACHE_HOME", self.cache_home.path())
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap()
    }
}

pub(crate) fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub(crate) async fn rows(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0)
}
