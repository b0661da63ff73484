//! Where a repository is, as one string: the one way a command line or a
//! config file names a store and opens it. [`Location`] is the parsed
//! address (its docs list the forms), [`LocationOptions`] how to reach it;
//! [`Location::backend`] opens the store, and `Repository::init_at`,
//! `open_at` and `open_read_only_at` a repository on it.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::backend::{
    FsBackend, ReadBackend, Retry, RetryOptions, S3Backend, S3Credentials, S3Options, WriteBackend,
    check_prefix,
};
use crate::crypto::Secret;
use crate::error::{Error, Result};
use crate::repository::{InitOptions, OpenOptions, Repository};

/// The forms a location may take, for error messages.
const FORMS: &str = "a location is a local directory (/var/lib/drkit/repo, ./repo), \
                     file:///absolute/path or s3://bucket[/prefix]";

/// Where a repository is: a local directory or an S3 bucket and prefix.
///
/// Parsed from text with [`FromStr`] and written back with [`Display`]
/// (`location.to_string().parse()` gives the same location). Each variant
/// holds a value checked when it was made, so a `Location` is always one
/// that can be opened. The forms:
///
/// | form | meaning |
/// |---|---|
/// | `/var/lib/drkit/repo`, `./repo`, `repo` | a local directory, absolute or relative to the working directory |
/// | `file:///var/lib/drkit/repo` | the same, as a URL: percent-escapes are decoded; the host is empty or `localhost` |
/// | `s3://bucket`, `s3://bucket/some/prefix` | an S3 bucket, optionally under a key prefix |
///
/// A string that begins like a URL scheme (letters, then `:`) is read as a
/// URL, so a relative directory named `repo:2024` is written `./repo:2024`.
/// An S3 location is not percent-decoded: the bucket and the prefix hold
/// only characters a URL carries as they are (`%` is a key character of
/// its own, see [`check_key`](crate::check_key)).
///
/// How to reach the store beyond its address (the S3 region, endpoint,
/// addressing style, credentials and Object Lock, and retries) is a
/// [`LocationOptions`]. [`Location::backend`] opens the store;
/// [`Repository::init_at`], [`Repository::open_at`] and
/// [`Repository::open_read_only_at`] open a repository on it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use dr_storage::{
///     InitOptions, KdfParams, Location, LocationOptions, Repository, S3Credentials, Secret,
/// };
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("repo");
/// # let path = path.to_str().ok_or("a non-UTF-8 temporary directory")?;
/// // A command line or config file gives the location as text.
/// let location: Location = path.parse()?;
/// let options = LocationOptions::default();
/// let secret = Secret::password("correct horse");
///
/// let init = InitOptions::encrypted(secret.clone()).kdf(KdfParams::INSECURE_FAST);
/// Repository::init_at(&location, &options, init).await?;
/// let repo = Repository::open_at(&location, &options, Some(&secret)).await?;
/// assert!(!repo.is_read_only());
///
/// // S3: the bucket and prefix in the location, the rest in options.
/// let s3: Location = "s3://backups/prod/db".parse()?;
/// assert_eq!(s3.to_string(), "s3://backups/prod/db");
/// let s3_options = LocationOptions::from_pairs([
///     ("region", "eu-west-1"),
///     ("endpoint", "http://127.0.0.1:9000"),
/// ])?
/// .credentials(S3Credentials::Static {
///     access_key_id: "AKID".into(),
///     secret_access_key: "SECRET".into(),
///     session_token: None,
/// });
/// # let _ = s3_options;
/// # Ok(()) }
/// ```
///
/// Parsing normalises and refuses:
///
/// ```
/// use dr_storage::Location;
///
/// let s3: Location = "s3://backups/prod/".parse()?;
/// assert_eq!(s3.to_string(), "s3://backups/prod");
/// let local: Location = "file:///var/lib/drkit%20repo".parse()?;
/// assert_eq!(local.to_string(), "/var/lib/drkit repo");
/// assert!("gs://backups".parse::<Location>().is_err());
/// # Ok::<(), dr_storage::Error>(())
/// ```
///
/// [`Display`]: fmt::Display
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// A local directory.
    Local(LocalPath),
    /// An S3 bucket, optionally under a key prefix.
    S3(S3Location),
}

/// A local directory's path, as a [`Location`] holds it: not empty, without
/// NUL bytes, and writable as a location (see [`LocalPath::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalPath(PathBuf);

/// An S3 bucket whose name follows S3's rules, and a key prefix in it that
/// passes [`check_prefix`](crate::check_prefix), without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Location {
    bucket: String,
    /// Empty for none; never ends with `/`.
    prefix: String,
}

/// How to reach the store at a [`Location`], beyond its address.
///
/// Every S3 setting is optional: what is not given takes the default its
/// field names. An S3 setting given for a local directory is refused when
/// the store is opened ([`Location::backend`]), not ignored.
///
/// Opening a location reads no environment variable, with one exception:
/// [`S3Credentials::DefaultChain`], the default for S3 locations, is
/// aws-config's standard credential chain, which itself reads the
/// environment (`AWS_ACCESS_KEY_ID`, profile files, web identity tokens)
/// and the instance metadata service. The region is the one given, or
/// [`LocationOptions::DEFAULT_REGION`]; the endpoint is the one given, or
/// AWS's.
///
/// ```
/// use std::time::Duration;
/// use dr_storage::{LocationOptions, RetryOptions};
///
/// let options = LocationOptions::default()
///     .region("eu-central-1")
///     .object_lock(true)
///     .retry(RetryOptions::new(5, Duration::from_millis(200), Duration::from_secs(10)));
/// assert_eq!(options.region.as_deref(), Some("eu-central-1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocationOptions {
    /// S3: the region; [`LocationOptions::DEFAULT_REGION`] if not given.
    pub region: Option<String>,
    /// S3: an endpoint URL (`http://127.0.0.1:9000`) for an S3-compatible
    /// server; AWS's if not given.
    pub endpoint: Option<String>,
    /// S3: address the bucket in the path (`host/bucket/key`) rather than
    /// the host name. If not given: on with an endpoint, off without.
    pub path_style: Option<bool>,
    /// S3: how to authenticate; [`S3Credentials::DefaultChain`] if not given.
    pub credentials: Option<S3Credentials>,
    /// S3: the bucket has Object Lock, so retention is honoured and deletes
    /// remove versions ([`S3Options::object_lock`]). Off if not given.
    pub object_lock: Option<bool>,
    /// Wrap the store in [`Retry`] with these options; no wrapper if not given.
    pub retry: Option<RetryOptions>,
}

impl LocationOptions {
    /// The S3 region used when none is given.
    pub const DEFAULT_REGION: &'static str = "us-east-1";

    /// The keys [`LocationOptions::from_pairs`] accepts.
    pub const KEYS: [&'static str; 4] = ["region", "endpoint", "path_style", "object_lock"];

    /// Options from `key=value` pairs, as a command line or a config file
    /// gives them: `region`, `endpoint`, `path_style` (`true` or `false`)
    /// and `object_lock` (`true` or `false`). Credentials and retries are
    /// not among them: they are set with [`LocationOptions::credentials`]
    /// and [`LocationOptions::retry`].
    ///
    /// ```
    /// use dr_storage::LocationOptions;
    ///
    /// let options = LocationOptions::from_pairs([("region", "eu-west-1"), ("path_style", "true")])?;
    /// assert_eq!(options.path_style, Some(true));
    /// assert!(LocationOptions::from_pairs([("bucket", "b")]).is_err());
    /// # Ok::<(), dr_storage::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` naming the key for an unknown or repeated key, a
    /// value that is not `true` or `false` where one of those is wanted, an
    /// empty region, or an endpoint that is not an `http://` or `https://`
    /// URL.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut options = Self::default();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            let invalid = |reason: String| Error::InvalidInput {
                what: format!("location option {key:?}"),
                reason,
            };
            let taken = match key {
                "region" => options.region.is_some(),
                "endpoint" => options.endpoint.is_some(),
                "path_style" => options.path_style.is_some(),
                "object_lock" => options.object_lock.is_some(),
                _ => {
                    return Err(invalid(format!(
                        "unknown key; the keys are {}",
                        Self::KEYS.join(", ")
                    )));
                }
            };
            if taken {
                return Err(invalid("given more than once".into()));
            }
            match key {
                "region" => {
                    check_region(value).map_err(invalid)?;
                    options.region = Some(value.to_owned());
                }
                "endpoint" => {
                    check_endpoint(value).map_err(invalid)?;
                    options.endpoint = Some(value.to_owned());
                }
                "path_style" => options.path_style = Some(parse_bool(value).map_err(invalid)?),
                _ => options.object_lock = Some(parse_bool(value).map_err(invalid)?),
            }
        }
        Ok(options)
    }

    /// Sets [`LocationOptions::region`].
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets [`LocationOptions::endpoint`].
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets [`LocationOptions::path_style`].
    #[must_use]
    pub fn path_style(mut self, yes: bool) -> Self {
        self.path_style = Some(yes);
        self
    }

    /// Sets [`LocationOptions::credentials`].
    #[must_use]
    pub fn credentials(mut self, credentials: S3Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets [`LocationOptions::object_lock`].
    #[must_use]
    pub fn object_lock(mut self, yes: bool) -> Self {
        self.object_lock = Some(yes);
        self
    }

    /// Sets [`LocationOptions::retry`].
    #[must_use]
    pub fn retry(mut self, retry: RetryOptions) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The names of the S3 settings that are given.
    fn s3_settings(&self) -> Vec<&'static str> {
        [
            ("region", self.region.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("path_style", self.path_style.is_some()),
            ("credentials", self.credentials.is_some()),
            ("object_lock", self.object_lock.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// The S3 backend's options for `s3`.
    fn s3_options(&self, s3: &S3Location) -> Result<S3Options> {
        let invalid = |what: &str, reason: String| Error::InvalidInput {
            what: format!("location option {what:?} for s3://{}", s3.bucket),
            reason,
        };
        let region = self.region.as_deref().unwrap_or(Self::DEFAULT_REGION);
        check_region(region).map_err(|reason| invalid("region", reason))?;
        let mut options = S3Options::new(&s3.bucket, region).prefix(&s3.prefix);
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint).map_err(|reason| invalid("endpoint", reason))?;
            options = options.endpoint(endpoint);
        }
        if let Some(yes) = self.path_style {
            options = options.force_path_style(yes);
        }
        if let Some(credentials) = &self.credentials {
            options = options.credentials(credentials.clone());
        }
        Ok(options.object_lock(self.object_lock.unwrap_or(false)))
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{value:?} is neither true nor false")),
    }
}

fn check_region(region: &str) -> Result<(), String> {
    if region.is_empty() || region.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{region:?} is not a region: it must be non-empty, without spaces"
        ));
    }
    Ok(())
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match host {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!(
            "{endpoint:?} is not an endpoint URL (http://host[:port] or https://host[:port])"
        )),
    }
}

impl Location {
    /// The store at this location, for reading and writing, wrapped in
    /// [`Retry`] if `options` ask for it. A local directory is opened
    /// with [`FsBackend`] and must exist ([`Repository::init_at`] creates
    /// it); an S3 bucket with [`S3Backend`], and no request is made yet.
    ///
    /// # Errors
    /// `NotFound` (with an empty key) if a local directory does not exist;
    /// `Io` if it cannot be read or is not a directory; `InvalidInput` if
    /// `options` give an S3 setting for a local directory, or an empty
    /// region or a malformed endpoint.
    pub async fn backend(&self, options: &LocationOptions) -> Result<Arc<dyn WriteBackend>> {
        self.open_backend(options, false).await
    }

    /// The store at this location, for reading only: what a read-only
    /// repository ([`Repository::open_read_only_at`]) stands on. Nothing
    /// is created or written.
    ///
    /// # Errors
    /// As [`Location::backend`].
    pub async fn read_backend(&self, options: &LocationOptions) -> Result<Arc<dyn ReadBackend>> {
        let backend: Arc<dyn ReadBackend> = self.open_backend(options, false).await?;
        Ok(backend)
    }

    /// Opens the store, creating a missing local directory if `create`.
    async fn open_backend(
        &self,
        options: &LocationOptions,
        create: bool,
    ) -> Result<Arc<dyn WriteBackend>> {
        match self {
            Location::Local(path) => {
                let given = options.s3_settings();
                if !given.is_empty() {
                    return Err(Error::InvalidInput {
                        what: format!("location options for {self}"),
                        reason: format!(
                            "{} {} only to S3 locations, and this is a local directory",
                            given.join(", "),
                            if given.len() == 1 { "applies" } else { "apply" }
                        ),
                    });
                }
                let backend = fs_backend(path.0.clone(), create).await?;
                Ok(with_retry(backend, options.retry))
            }
            Location::S3(s3) => {
                let backend = S3Backend::new(options.s3_options(s3)?).await?;
                Ok(with_retry(backend, options.retry))
            }
        }
    }
}

/// `backend` as a shared trait object, in [`Retry`] if `retry` is given.
fn with_retry<B: WriteBackend + 'static>(
    backend: B,
    retry: Option<RetryOptions>,
) -> Arc<dyn WriteBackend> {
    match retry {
        Some(retry) => Arc::new(Retry::new(backend, retry)),
        None => Arc::new(backend),
    }
}

/// An [`FsBackend`] at `root`, which must exist unless `create`; the
/// directory is looked at off the async runtime.
async fn fs_backend(root: PathBuf, create: bool) -> Result<FsBackend> {
    let location = root.display().to_string();
    let open = move || {
        if !create {
            match std::fs::metadata(&root) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotFound {
                        location: root.display().to_string(),
                        key: String::new(),
                    });
                }
                Err(e) => return Err(Error::io(format!("reading {}", root.display()), e)),
                Ok(_) => {}
            }
        }
        FsBackend::new(root)
    };
    match tokio::task::spawn_blocking(open).await {
        Ok(result) => result,
        Err(join) => Err(Error::io(
            format!("opening {location}"),
            std::io::Error::other(join),
        )),
    }
}

impl Repository {
    /// Creates a repository at `location`, as [`Repository::init`] does on
    /// the store [`Location::backend`] opens; a missing local directory
    /// is created first (with its missing parents).
    ///
    /// # Errors
    /// As [`Location::backend`] (but for a missing local directory) and
    /// [`Repository::init`]; `Io` if a local directory cannot be created.
    pub async fn init_at(
        location: &Location,
        options: &LocationOptions,
        init: InitOptions,
    ) -> Result<Self> {
        Self::init(location.open_backend(options, true).await?, init).await
    }

    /// Opens the repository at `location`, as [`Repository::open`] does on
    /// the store [`Location::backend`] opens. Nothing is created: a local
    /// directory that does not exist is `NotFound`.
    ///
    /// # Errors
    /// As [`Location::backend`] and [`Repository::open`].
    pub async fn open_at(
        location: &Location,
        options: &LocationOptions,
        secret: Option<&Secret>,
    ) -> Result<Self> {
        Self::open(location.backend(options).await?, secret).await
    }

    /// Opens the repository at `location`, as [`Repository::open_with`]
    /// does (with the secret and key cache of `open`) on the store
    /// [`Location::backend`] opens. Nothing is created in the store.
    ///
    /// # Errors
    /// As [`Location::backend`] and [`Repository::open_with`].
    pub async fn open_at_with(
        location: &Location,
        options: &LocationOptions,
        open: OpenOptions,
    ) -> Result<Self> {
        Self::open_with(location.backend(options).await?, open).await
    }

    /// Opens the repository at `location` for reading only, as
    /// [`Repository::open_read_only`] does on the store
    /// [`Location::read_backend`] opens.
    ///
    /// # Errors
    /// As [`Location::read_backend`] and [`Repository::open_read_only`].
    pub async fn open_read_only_at(
        location: &Location,
        options: &LocationOptions,
        secret: Option<&Secret>,
    ) -> Result<Self> {
        Self::open_read_only(location.read_backend(options).await?, secret).await
    }

    /// Opens the repository at `location` for reading only, as
    /// [`Repository::open_read_only_with`] does (with the secret and key
    /// cache of `open`) on the store [`Location::read_backend`] opens.
    ///
    /// # Errors
    /// As [`Location::read_backend`] and [`Repository::open_read_only_with`].
    pub async fn open_read_only_at_with(
        location: &Location,
        options: &LocationOptions,
        open: OpenOptions,
    ) -> Result<Self> {
        Self::open_read_only_with(location.read_backend(options).await?, open).await
    }
}

impl LocalPath {
    /// A local directory's path. A relative path that would read as a URL
    /// (`repo:2024`) is kept as `./repo:2024`, which names the same directory.
    ///
    /// # Errors
    /// `InvalidInput` if `path` is empty or holds a NUL byte, or is relative
    /// and not UTF-8 (a location is text, and only an absolute path can be
    /// written as a `file://` URL).
    pub fn new(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let invalid = |reason: &str| Error::InvalidInput {
            what: format!("local repository path {:?}", path.display().to_string()),
            reason: reason.to_owned(),
        };
        let bytes = path.as_os_str().as_bytes();
        if bytes.is_empty() {
            return Err(invalid("it is empty"));
        }
        if bytes.contains(&0) {
            return Err(invalid("it holds a NUL byte"));
        }
        if path.is_absolute() {
            return Ok(Self(path));
        }
        match path.to_str() {
            None => Err(invalid(
                "a relative path must be UTF-8 to be written as a location; give an absolute one",
            )),
            Some(text) if url_scheme(text).is_some() => {
                Ok(Self(PathBuf::from(format!("./{text}"))))
            }
            Some(_) => Ok(Self(path)),
        }
    }

    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for LocalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.to_str() {
            Some(text) => f.write_str(text),
            // Not UTF-8, hence absolute (`new`): a file URL carries every byte.
            None => {
                f.write_str("file://")?;
                for &b in self.0.as_os_str().as_bytes() {
                    if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
                        write!(f, "{}", char::from(b))?;
                    } else {
                        write!(f, "%{b:02X}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl S3Location {
    /// A bucket and a key prefix in it (empty for none; one trailing `/`
    /// is dropped).
    ///
    /// # Errors
    /// `InvalidInput` if the bucket's name breaks S3's rules (3 to 63
    /// lowercase letters, digits, `.` and `-`, beginning and ending with a
    /// letter or digit, no `..`, not an IP address, no reserved prefix or
    /// suffix) or the prefix fails [`check_prefix`](crate::check_prefix).
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Result<Self> {
        let (bucket, prefix) = (bucket.into(), prefix.into());
        check_bucket(&bucket).map_err(|reason| Error::InvalidInput {
            what: format!("S3 bucket name {bucket:?}"),
            reason: reason.to_owned(),
        })?;
        let prefix = normal_prefix(&prefix).map_err(|reason| Error::InvalidInput {
            what: format!("S3 key prefix {prefix:?}"),
            reason: reason.to_owned(),
        })?;
        Ok(Self { bucket, prefix })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without a trailing `/`; empty for none.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Why `name` is not an S3 bucket name (the rules for general purpose
/// buckets), if it is not one.
fn check_bucket(name: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&name.len()) {
        return Err("a bucket name is 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
    {
        return Err("a bucket name holds only lowercase letters, digits, '.' and '-'");
    }
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge(name.bytes().next()) || !edge(name.bytes().last()) {
        return Err("a bucket name begins and ends with a letter or digit");
    }
    if name.contains("..") {
        return Err("a bucket name has no two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("a bucket name is not an IP address");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Err("the prefixes xn--, sthree- and amzn-s3-demo- are reserved by S3");
    }
    if ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return Err(
            "the suffixes -s3alias, --ol-s3, .mrap, --x-s3 and --table-s3 are reserved by S3",
        );
    }
    Ok(())
}

/// `prefix` checked and without its trailing `/`, or why it is refused.
fn normal_prefix(prefix: &str) -> Result<String, &'static str> {
    match check_prefix(prefix) {
        Ok(()) => Ok(prefix.strip_suffix('/').unwrap_or(prefix).to_owned()),
        Err(Error::InvalidKey { reason, .. }) => Err(reason),
        Err(_) => Err("not a valid key prefix"),
    }
}

/// The scheme of a string that begins like a URL (`scheme:`), and the rest
/// after the colon.
fn url_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// The location as an error names it: credentials written into a URL's
/// host part (`s3://key:secret@bucket`) are left out.
fn shown(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{scheme}://…@{}", &rest[at + 1..]);
        }
    }
    text.to_owned()
}

fn refuse(text: &str, reason: impl fmt::Display) -> Error {
    Error::InvalidInput {
        what: format!("repository location {:?}", shown(text)),
        reason: format!("{reason}; {FORMS}"),
    }
}

/// Decodes `%XX` escapes into bytes.
fn percent_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |d: Option<u8>| d.and_then(|d| char::from(d).to_digit(16));
        match (hex(bytes.next()), hex(bytes.next())) {
            (Some(hi), Some(lo)) => out.push((hi << 4 | lo) as u8),
            _ => return Err("a '%' is not followed by two hexadecimal digits"),
        }
    }
    Ok(out)
}

/// `file://[localhost]/absolute/path`, given what follows `file:`.
fn parse_file_url(text: &str, rest: &str) -> Result<LocalPath> {
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(refuse(text, "a file URL begins file:///"));
    };
    let Some(slash) = rest.find('/') else {
        return Err(refuse(text, "a file URL needs an absolute path"));
    };
    let (host, path) = rest.split_at(slash);
    if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
        return Err(refuse(
            text,
            "a file URL names this machine: its host is empty or localhost",
        ));
    }
    if path.contains(['?', '#']) {
        return Err(refuse(
            text,
            "a file URL's path holds no '?' or '#' (write them as %3F and %23)",
        ));
    }
    let bytes = percent_decode(path).map_err(|reason| refuse(text, reason))?;
    local_path(text, OsStr::from_bytes(&bytes))
}

/// [`LocalPath::new`], its refusal naming the location `text`.
fn local_path(text: &str, path: impl Into<PathBuf>) -> Result<LocalPath> {
    LocalPath::new(path).map_err(|err| match err {
        Error::InvalidInput { reason, .. } => refuse(text, reason),
        other => other,
    })
}

/// `s3://bucket[/prefix]`, given what follows `s3:`.
fn parse_s3_url(text: &str, rest: &str) -> Result<S3Location> {
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(refuse(text, "an S3 location begins s3://"));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(refuse(text, "it names no bucket"));
    }
    if bucket.contains('@') {
        return Err(refuse(
            text,
            "credentials do not belong in a location: give them as options",
        ));
    }
    check_bucket(bucket).map_err(|reason| refuse(text, format!("bad bucket name: {reason}")))?;
    let prefix = normal_prefix(prefix)
        .map_err(|reason| refuse(text, format!("bad key prefix: {reason}")))?;
    Ok(S3Location {
        bucket: bucket.to_owned(),
        prefix,
    })
}

impl FromStr for Location {
    type Err = Error;

    /// Parses one of the forms in the module docs.
    ///
    /// # Errors
    /// `InvalidInput` naming the location (without any credentials written
    /// into it) and listing the forms accepted: for an empty string, a
    /// scheme other than `file` and `s3`, a file URL on another host, an
    /// S3 URL without a valid bucket, or a prefix that is not a valid key
    /// prefix.
    fn from_str(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(refuse(text, "it is empty"));
        }
        let Some((scheme, rest)) = url_scheme(text) else {
            return local_path(text, text).map(Location::Local);
        };
        if scheme.eq_ignore_ascii_case("file") {
            parse_file_url(text, rest).map(Location::Local)
        } else if scheme.eq_ignore_ascii_case("s3") {
            parse_s3_url(text, rest).map(Location::S3)
        } else if rest.starts_with("//") {
            Err(refuse(
                text,
                format!("the scheme {scheme}: is not supported"),
            ))
        } else {
            Err(refuse(
                text,
                format!(
                    "the scheme {scheme}: is not supported (a relative directory \
                     whose name holds ':' is written ./{text})"
                ),
            ))
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => path.fmt(f),
            Location::S3(s3) => s3.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode("a%20b%2fc").unwrap(), b"a b/c");
        assert_eq!(percent_decode("%FF").unwrap(), [0xFF]);
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%zz").is_err());
    }

    #[test]
    fn non_utf8_paths_are_written_as_file_urls() {
        let path = LocalPath::new(OsStr::from_bytes(b"/srv/r\xFFepo x")).unwrap();
        assert_eq!(path.to_string(), "file:///srv/r%FFepo%20x");
        let back: Location = path.to_string().parse().unwrap();
        assert_eq!(back, Location::Local(path));
        assert!(LocalPath::new(OsStr::from_bytes(b"r\xFFepo")).is_err());
    }

    #[test]
    fn relative_paths_that_read_as_urls_are_kept_apart() {
        let path = LocalPath::new("s3://bucket").unwrap();
        assert_eq!(path.to_string(), "./s3://bucket");
        let back: Location = path.to_string().parse().unwrap();
        assert_eq!(back, Location::Local(path));
    }

    #[test]
    fn credentials_in_a_location_are_not_repeated() {
        let err = "s3://AKID:very-secret@bucket/p"
            .parse::<Location>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("very-secret"), "{err}");
        assert!(err.contains("s3://…@bucket/p"), "{err}");
    }
}
