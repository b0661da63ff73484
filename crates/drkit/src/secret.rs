//! Where a password comes from: a file, a command or an environment
//! variable, never the config file itself.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::error::{Error, Result};

/// What an inline `password = "..."` is told.
pub(crate) const INLINE_PASSWORD: &str = "a password is never written in the config file; \
     expected a table with one of: { file = \"/etc/drkit/password\" }, \
     { command = [\"pass\", \"show\", \"drkit\"] } or { env = \"DRKIT_PASSWORD\" }";

/// Where a password is read from, as the config file names it: a table with
/// exactly one of these keys.
///
/// - `{ file = "/etc/drkit/repo.pass" }`: the file's content, less one
///   trailing line break.
/// - `{ command = ["pass", "show", "drkit/repo"] }`: what the command prints
///   on standard output, less one trailing line break. The list is the
///   argument vector, run without a shell; the command must exit with 0.
/// - `{ env = "DRKIT_REPO_PASSWORD" }`: the variable's value, looked up in
///   the environment the caller passes to [`resolve`](Self::resolve).
///
/// An empty password is refused in every form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretSource {
    /// Read a file.
    File(PathBuf),
    /// Run a command (argv, no shell) and read its standard output.
    Command(Vec<String>),
    /// Read an environment variable by name.
    Env(String),
}

impl SecretSource {
    /// Obtains the password: reads the file, runs the command (with
    /// `tokio::process`, standard input closed) or looks the variable up with
    /// `env`, which is how the caller's environment is reached (the binary
    /// passes `|name| std::env::var(name).ok()`).
    ///
    /// # Errors
    /// [`Error::Secret`] if the file cannot be read, the command cannot be
    /// started or exits with a failure, the variable is unset, or the
    /// password is empty or not UTF-8.
    pub async fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Password> {
        let text = match self {
            SecretSource::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| self.error("cannot be read", Some(e)))?;
                strip_line_break(text)
            }
            SecretSource::Command(argv) => self.run(argv).await?,
            SecretSource::Env(name) => {
                env(name).ok_or_else(|| self.error("the variable is not set", None))?
            }
        };
        if text.is_empty() {
            return Err(self.error("the password is empty", None));
        }
        Ok(Password(text))
    }

    async fn run(&self, argv: &[String]) -> Result<String> {
        let Some((program, args)) = argv.split_first() else {
            return Err(self.error("the command is empty", None));
        };
        let output = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| self.error("the command could not be started", Some(e)))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first_line = stderr.lines().next().unwrap_or("").trim();
            return Err(self.error(
                &format!("the command failed ({}): {first_line}", output.status),
                None,
            ));
        }
        let text = String::from_utf8(output.stdout)
            .map_err(|_| self.error("the command printed text that is not UTF-8", None))?;
        Ok(strip_line_break(text))
    }

    fn error(&self, reason: &str, source: Option<std::io::Error>) -> Error {
        Error::Secret {
            from: self.to_string(),
            reason: reason.to_owned(),
            source,
        }
    }
}

fn strip_line_break(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Command(argv) => write!(f, "command {argv:?}"),
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// The keys of the table, checked by serde.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceTable {
    file: Option<PathBuf>,
    command: Option<Vec<String>>,
    env: Option<String>,
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(SourceVisitor)
    }
}

struct SourceVisitor;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = SecretSource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table with one of `file`, `command` or `env`")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<SecretSource, E> {
        Err(E::custom(INLINE_PASSWORD))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<SecretSource, A::Error> {
        let table = SourceTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let one_of = "expected exactly one of `file`, `command` or `env`";
        match (table.file, table.command, table.env) {
            (Some(path), None, None) => {
                if path.as_os_str().is_empty() {
                    return Err(de::Error::custom("`file` is empty; expected a path"));
                }
                Ok(SecretSource::File(path))
            }
            (None, Some(argv), None) => {
                if argv.first().is_none_or(String::is_empty) {
                    return Err(de::Error::custom(
                        "`command` is empty; expected the program and its arguments, \
                         such as [\"pass\", \"show\", \"drkit\"]",
                    ));
                }
                Ok(SecretSource::Command(argv))
            }
            (None, None, Some(name)) => {
                if name.is_empty() || name.contains(['=', '\0']) {
                    return Err(de::Error::custom(format!(
                        "{name:?} cannot name an environment variable"
                    )));
                }
                Ok(SecretSource::Env(name))
            }
            (None, None, None) => Err(de::Error::custom(format!("no source given; {one_of}"))),
            _ => Err(de::Error::custom(format!("more than one source; {one_of}"))),
        }
    }
}

/// A password obtained from a [`SecretSource`]. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A password from text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[tokio::test]
    async fn files_commands_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let file = SecretSource::File(path.clone());
        assert_eq!(file.resolve(no_env).await.unwrap().expose(), "s3cret");

        let command = SecretSource::Command(vec!["echo".into(), "from a command".into()]);
        assert_eq!(
            command.resolve(no_env).await.unwrap().expose(),
            "from a command"
        );
        // No shell: the argument is passed as it is.
        let literal = SecretSource::Command(vec!["echo".into(), "$HOME".into()]);
        assert_eq!(literal.resolve(no_env).await.unwrap().expose(), "$HOME");

        let env = SecretSource::Env("PGPASSWORD".into());
        let password = env
            .resolve(|name| (name == "PGPASSWORD").then(|| "pw".to_owned()))
            .await
            .unwrap();
        assert_eq!(password.expose(), "pw");
        assert_eq!(format!("{password:?}"), "Password(<hidden>)");
    }

    #[tokio::test]
    async fn failures_say_which_source() {
        let missing = SecretSource::File("/nonexistent/drkit/pass".into());
        let err = missing.resolve(no_env).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Secret);
        assert!(err.to_string().contains("/nonexistent/drkit/pass"), "{err}");

        let failing = SecretSource::Command(vec![
            "sh".into(),
            "-c".into(),
            "echo nope >&2; exit 3".into(),
        ]);
        let err = failing.resolve(no_env).await.unwrap_err().to_string();
        assert!(err.contains("failed") && err.contains("nope"), "{err}");

        let unset = SecretSource::Env("DRKIT_UNSET".into());
        let err = unset.resolve(no_env).await.unwrap_err().to_string();
        assert!(
            err.contains("DRKIT_UNSET") && err.contains("not set"),
            "{err}"
        );

        let empty = SecretSource::Command(vec!["true".into()]);
        let err = empty.resolve(no_env).await.unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
