//! A backend in an S3 bucket (AWS or an S3-compatible server), over `aws-sdk-s3`.
//!
//! - Every PutObject and UploadPart carries `x-amz-checksum-sha256`, so the
//!   server can check what it stored (and Object Lock puts are accepted);
//!   the SDK's own default CRC32 checksums are off (`WhenRequired`), because
//!   many S3-compatible servers reject them.
//! - Objects larger than [`S3Options::multipart_threshold`] are uploaded in
//!   parts, at most 4 at a time; any failure aborts the upload.
//! - [`PutMode::Create`] sends `If-None-Match: *` (on CompleteMultipartUpload
//!   for multipart uploads); a 412 becomes `AlreadyExists`. Servers that
//!   ignore the header (Garage) silently overwrite: that is the server's
//!   fault, not detectable here.
//! - ObjectRetention goes on PutObject / CreateMultipartUpload; after a multipart
//!   upload it is also set with PutObjectRetention on the new version, since
//!   some servers ignore it on CreateMultipartUpload. If that call fails the
//!   put fails, but the object is already stored.
//! - `delete` on a bucket with Object Lock ([`S3Options::object_lock`])
//!   removes every *version* of the key by version id, newest first, instead
//!   of adding a delete marker, so retention is really enforced: a retained
//!   version makes the delete fail with `Retained` (versions newer than it are
//!   already gone by then, so the key reads as the retained version).

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::backend::common::check_limit;
use crate::backend::{
    BackendCapabilities, ListPage, ObjectMeta, ObjectRetention, PutMode, PutOptions, ReadBackend,
    RetentionMode, UnfinishedWrite, WriteBackend, check_key, check_prefix,
};
use crate::error::{Error, Result};

/// The smallest part S3 accepts (except for the last one).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The most parts an upload may have.
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once.
const PART_CONCURRENCY: usize = 4;
/// Bodies at least this large are hashed off the async runtime.
const BLOCKING_HASH_SIZE: usize = 1024 * 1024;

/// How the backend authenticates.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum S3Credentials {
    /// Fixed keys.
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: String,
        /// A session token, for temporary credentials.
        session_token: Option<String>,
    },
    /// The AWS default chain: environment, profile files, web identity
    /// (Kubernetes service accounts), ECS and EC2 instance metadata.
    DefaultChain,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Credentials::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish_non_exhaustive(),
            S3Credentials::DefaultChain => f.write_str("DefaultChain"),
        }
    }
}

/// Where and how to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// A key prefix inside the bucket (`drkit/prod`), empty for none.
    pub prefix: String,
    /// A custom endpoint (`http://127.0.0.1:9000`) for S3-compatible servers.
    pub endpoint: Option<String>,
    /// The region (`us-east-1`; whatever the server expects).
    pub region: String,
    /// Address the bucket in the path (`host/bucket/key`) rather than the host name.
    pub force_path_style: bool,
    /// How to authenticate.
    pub credentials: S3Credentials,
    /// Objects larger than this are uploaded in parts. Default 64 MiB.
    pub multipart_threshold: u64,
    /// The size of each part. Default 16 MiB, at least 5 MiB.
    pub part_size: u64,
    /// Attempts per request, including the first, for the SDK's standard
    /// retry policy (transient errors only). Default 3.
    pub max_attempts: u32,
    /// Connect timeout; `None` keeps the SDK's default.
    pub connect_timeout: Option<Duration>,
    /// The bucket has Object Lock: honour retention and delete by version.
    pub object_lock: bool,
}

impl S3Options {
    /// Options for `bucket` in `region`, with the default chain's credentials
    /// and default sizes.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: region.into(),
            force_path_style: false,
            credentials: S3Credentials::DefaultChain,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            max_attempts: 3,
            connect_timeout: None,
            object_lock: false,
        }
    }

    /// Sets [`S3Options::prefix`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`S3Options::endpoint`] and path-style addressing, as S3-compatible servers want.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.force_path_style = true;
        self
    }

    /// Sets [`S3Options::force_path_style`].
    pub fn force_path_style(mut self, yes: bool) -> Self {
        self.force_path_style = yes;
        self
    }

    /// Sets [`S3Options::credentials`].
    pub fn credentials(mut self, credentials: S3Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets static [`S3Options::credentials`].
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = S3Credentials::Static {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        };
        self
    }

    /// Sets [`S3Options::multipart_threshold`].
    pub fn multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// Sets [`S3Options::part_size`].
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    /// Sets [`S3Options::max_attempts`].
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`S3Options::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Sets [`S3Options::object_lock`].
    pub fn object_lock(mut self, yes: bool) -> Self {
        self.object_lock = yes;
        self
    }
}

/// Objects in an S3 bucket, optionally under a key prefix.
///
/// ```no_run
/// use dr_storage::{PutOptions, ReadBackend, S3Backend, S3Options, WriteBackend};
/// # async fn demo() -> dr_storage::Result<()> {
/// let options = S3Options::new("backups", "us-east-1")
///     .endpoint("http://127.0.0.1:9000")
///     .static_credentials("AKID", "SECRET")
///     .prefix("prod");
/// let store = S3Backend::new(options).await?;
/// store.put("config", "hello".into(), PutOptions::CREATE).await?;
/// assert_eq!(store.get("config", None).await?, "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct S3Backend {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
    multipart_threshold: u64,
    part_size: u64,
    object_lock: bool,
}

impl S3Backend {
    /// A backend for the bucket `options` describe. No request is made yet.
    ///
    /// # Errors
    /// `InvalidInput` if the bucket is empty, the prefix is not a valid key
    /// prefix, the part size is below 5 MiB or `max_attempts` is 0.
    pub async fn new(options: S3Options) -> Result<Self> {
        let invalid = |what: &str, reason: &str| Error::InvalidInput {
            what: what.to_owned(),
            reason: reason.to_owned(),
        };
        if options.bucket.is_empty() {
            return Err(invalid("S3 bucket", "must not be empty"));
        }
        let prefix = options.prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            check_key(prefix).map_err(|_| invalid("S3 key prefix", "must be a valid key"))?;
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        if options.part_size < MIN_PART_SIZE {
            return Err(invalid("S3 part size", "must be at least 5 MiB"));
        }
        if options.max_attempts == 0 {
            return Err(invalid("S3 max attempts", "must be at least 1"));
        }
        let region = Region::new(options.region.clone());
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .force_path_style(options.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(options.max_attempts));
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        if let Some(timeout) = options.connect_timeout {
            config =
                config.timeout_config(TimeoutConfig::builder().connect_timeout(timeout).build());
        }
        config = match &options.credentials {
            S3Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => config.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "drkit-static",
            )),
            S3Credentials::DefaultChain => config.credentials_provider(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(region)
                    .build()
                    .await,
            ),
        };
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: options.bucket,
            prefix,
            multipart_threshold: options.multipart_threshold,
            part_size: options.part_size,
            object_lock: options.object_lock,
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Maps an SDK failure to the crate's error.
    fn map_err<E>(&self, operation: &'static str, key: &str, err: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let location = self.location();
        let key = key.to_owned();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or_default().to_owned();
        match (status, code.as_str()) {
            (_, "NoSuchBucket") => {}
            (Some(404), _) | (_, "NoSuchKey" | "NotFound") => {
                return Error::NotFound { location, key };
            }
            (Some(412), _) | (_, "PreconditionFailed") => {
                return Error::AlreadyExists { location, key };
            }
            (Some(403), _) | (_, "AccessDenied") if operation == "delete" && self.object_lock => {
                return Error::Retained { location, key };
            }
            _ => {}
        }
        let message = DisplayErrorContext(&err).to_string();
        if status == Some(403) || code == "AccessDenied" {
            return Error::AccessDenied {
                location,
                operation,
                key,
                source: Some(message.into()),
            };
        }
        let transient = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => {
                matches!(status, Some(500 | 502 | 503 | 504))
                    || matches!(
                        code.as_str(),
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestTimeout"
                            | "RequestTimeTooSkewed"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "ConditionalRequestConflict"
                    )
            }
            _ => false,
        };
        Error::Backend {
            location,
            operation,
            key,
            transient,
            source: message.into(),
        }
    }

    async fn put_single(
        &self,
        key: &str,
        full: String,
        data: Bytes,
        options: PutOptions,
    ) -> Result<()> {
        let checksum = sha256_base64(data.clone()).await;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            // The algorithm header too: moto wants it (or Content-MD5) for Object Lock puts.
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(checksum)
            .body(ByteStream::from(data));
        if options.mode == PutMode::Create {
            req = req.if_none_match("*");
        }
        if let Some(retention) = options.retention {
            let (mode, until) = lock_params(retention);
            req = req
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until);
        }
        req.send().await.map_err(|e| self.map_err("put", key, e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        full: String,
        data: Bytes,
        options: PutOptions,
    ) -> Result<()> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        if let Some(retention) = options.retention {
            let (mode, until) = lock_params(retention);
            req = req
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until);
        }
        let created = req.send().await.map_err(|e| self.map_err("put", key, e))?;
        let Some(upload_id) = created.upload_id else {
            return Err(Error::Backend {
                location: self.location(),
                operation: "put",
                key: key.to_owned(),
                transient: false,
                source: "CreateMultipartUpload returned no upload id".into(),
            });
        };
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: full.clone(),
            upload_id: Some(upload_id.clone()),
        };
        let result = self
            .upload_parts(key, &full, &upload_id, data, options.mode)
            .await;
        match result {
            Ok(version) => {
                guard.upload_id = None;
                match options.retention {
                    Some(retention) => self.retain_version(key, &full, version, retention).await,
                    None => Ok(()),
                }
            }
            Err(err) => {
                guard.upload_id = None;
                // Best effort: a failed abort leaves an incomplete upload that
                // a bucket lifecycle rule removes; the original error matters more.
                let _ignored = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(err)
            }
        }
    }

    /// Uploads the parts and completes the upload; returns the new version's id, if any.
    async fn upload_parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        data: Bytes,
        mode: PutMode,
    ) -> Result<Option<String>> {
        let len = data.len() as u64;
        let part_size = self.part_size.max(len.div_ceil(MAX_PARTS));
        let count = len.div_ceil(part_size);
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        let mut next: u64 = 0;
        loop {
            while next < count && tasks.len() < PART_CONCURRENCY {
                let start = next * part_size;
                let end = (start + part_size).min(len);
                // Both ends are at most `data.len()`.
                let body = data
                    .slice(usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0));
                // At most MAX_PARTS, well inside i32.
                let number = i32::try_from(next + 1).unwrap_or(i32::MAX);
                let this = self.clone();
                let (key, full, upload_id) =
                    (key.to_owned(), full.to_owned(), upload_id.to_owned());
                tasks.spawn(
                    async move { this.upload_part(&key, full, upload_id, number, body).await },
                );
                next += 1;
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(part)) => parts.push(part?),
                Some(Err(join)) => {
                    return Err(Error::Backend {
                        location: self.location(),
                        operation: "put",
                        key: key.to_owned(),
                        transient: false,
                        source: Box::new(join),
                    });
                }
            }
        }
        parts.sort_by_key(|p: &CompletedPart| p.part_number);
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if mode == PutMode::Create {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(out) => Ok(out.version_id),
            Err(err) if completed_with_misnamed_root(&err) => Ok(err
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-version-id"))
                .map(str::to_owned)),
            Err(err) => Err(self.map_err("put", key, err)),
        }
    }

    /// Sets retention on a completed multipart upload's version. ObjectRetention
    /// is also sent on CreateMultipartUpload, but some servers (moto 5.2.1)
    /// drop it there; setting the same date again is allowed even in
    /// compliance mode.
    async fn retain_version(
        &self,
        key: &str,
        full: &str,
        version: Option<String>,
        retention: ObjectRetention,
    ) -> Result<()> {
        let (_, until) = lock_params(retention);
        let mode = match retention.mode {
            RetentionMode::Governance => ObjectLockRetentionMode::Governance,
            RetentionMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(full)
            .set_version_id(version)
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(until)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.map_err("put", key, e))?;
        Ok(())
    }

    async fn upload_part(
        &self,
        key: &str,
        full: String,
        upload_id: String,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart> {
        let checksum = sha256_base64(body.clone()).await;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.map_err("put", key, e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .checksum_sha256(checksum)
            .build())
    }

    /// On an Object Lock bucket: removes every version and delete marker of the key.
    async fn delete_versions(&self, key: &str, full: &str) -> Result<()> {
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(full)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.map_err("list versions", key, e))?;
            let versions = page
                .versions()
                .iter()
                .filter(|v| v.key() == Some(full))
                .filter_map(|v| v.version_id());
            let markers = page
                .delete_markers()
                .iter()
                .filter(|m| m.key() == Some(full))
                .filter_map(|m| m.version_id());
            let mut ids: Vec<&str> = versions.chain(markers).collect();
            ids.dedup();
            for id in ids {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(full)
                    .version_id(id)
                    .send()
                    .await
                    .map_err(|e| self.map_err("delete", key, e))?;
            }
            // Versions come in key order: past our key, nothing more is ours.
            let past = page.next_key_marker().is_some_and(|k| k != full);
            if page.is_truncated() != Some(true) || past {
                return Ok(());
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
        }
    }
}

/// Aborts a multipart upload if the put future is dropped half-way.
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let req = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id);
            handle.spawn(async move {
                let _ignored = req.send().await;
            });
        }
    }
}

/// moto 5.2.1 answers a successful CompleteMultipartUpload with the root
/// element `CompleteMultipartUploadResponse` instead of
/// `CompleteMultipartUploadResult`, which the SDK cannot parse although the
/// upload is complete. Only a 200 whose body is exactly that answer (no
/// `<Error>`, which S3 may also send with a 200) counts as success.
fn completed_with_misnamed_root<E>(err: &SdkError<E>) -> bool {
    let SdkError::ServiceError(service) = err else {
        return false;
    };
    let raw = service.raw();
    if raw.status().as_u16() != 200 {
        return false;
    }
    let Some(body) = raw.body().bytes() else {
        return false;
    };
    let body = String::from_utf8_lossy(body);
    body.contains("<CompleteMultipartUploadResponse")
        && body.contains("<ETag>")
        && !body.contains("<Error>")
}

fn lock_params(retention: ObjectRetention) -> (ObjectLockMode, DateTime) {
    let mode = match retention.mode {
        RetentionMode::Governance => ObjectLockMode::Governance,
        RetentionMode::Compliance => ObjectLockMode::Compliance,
    };
    // Round up to a whole second so the object is never released early.
    let until = retention.until;
    let secs = until.as_second() + i64::from(until.subsec_nanosecond() > 0);
    (mode, DateTime::from_secs(secs))
}

/// Base64 of the SHA-256 of `data`, hashed off the runtime when large.
async fn sha256_base64(data: Bytes) -> String {
    fn hash(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
    }
    if data.len() < BLOCKING_HASH_SIZE {
        return hash(&data);
    }
    let copy = data.clone();
    match tokio::task::spawn_blocking(move || hash(&copy)).await {
        Ok(sum) => sum,
        // Only when the blocking pool is shutting down: hash here instead.
        Err(_) => hash(&data),
    }
}

#[async_trait]
impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_owned()
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        check_key(key)?;
        let full = self.full_key(key);
        let mut req = self.client.get_object().bucket(&self.bucket).key(&full);
        if let Some(range) = &range {
            if range.start >= range.end {
                // Nothing to read, but a missing object is still NotFound.
                return match self.head(key).await? {
                    Some(_) => Ok(Bytes::new()),
                    None => Err(Error::NotFound {
                        location: self.location(),
                        key: key.to_owned(),
                    }),
                };
            }
            req = req.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                if range.is_some() && (status == Some(416) || err.code() == Some("InvalidRange")) {
                    // The range starts at or past the end: empty, per the contract.
                    return Ok(Bytes::new());
                }
                return Err(self.map_err("get", key, err));
            }
        };
        let body = out.body.collect().await.map_err(|e| Error::Backend {
            location: self.location(),
            operation: "get",
            key: key.to_owned(),
            transient: true,
            source: DisplayErrorContext(&e).to_string().into(),
        })?;
        Ok(body.into_bytes())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: out
                    .content_length
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            })),
            Err(err) => match self.map_err("head", key, err) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage> {
        check_prefix(prefix)?;
        check_limit(limit)?;
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .max_keys(i32::try_from(limit.min(1000)).unwrap_or(1000))
            .set_continuation_token(token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.map_err("list", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?.strip_prefix(self.prefix.as_str())?;
                Some(ObjectMeta {
                    key: key.to_owned(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }
}

#[async_trait]
impl WriteBackend for S3Backend {
    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities {
            atomic_create: true,
            object_lock: self.object_lock,
            in_place_writes: false,
        }
    }

    async fn put(&self, key: &str, data: Bytes, options: PutOptions) -> Result<()> {
        check_key(key)?;
        let full = self.full_key(key);
        if data.len() as u64 > self.multipart_threshold {
            self.put_multipart(key, full, data, options).await
        } else {
            self.put_single(key, full, data, options).await
        }
    }

    async fn unfinished_writes(&self) -> Result<Vec<UnfinishedWrite>> {
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.map_err("list multipart uploads", "", e))?;
            for upload in out.uploads() {
                let (Some(full), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Some(key) = full.strip_prefix(self.prefix.as_str()) else {
                    continue;
                };
                let started = upload
                    .initiated()
                    .and_then(|t| jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                found.push(UnfinishedWrite::new(key, started).with_upload_id(id));
            }
            if out.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(found);
            }
        }
    }

    async fn remove_unfinished(&self, write: &UnfinishedWrite) -> Result<()> {
        let Some(id) = &write.upload_id else {
            return Err(Error::InvalidInput {
                what: format!("unfinished write {:?}", write.name),
                reason: "not a multipart upload of this store".into(),
            });
        };
        check_key(&write.name)?;
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(&write.name))
            .upload_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match self.map_err("abort multipart upload", &write.name, err) {
                // NoSuchUpload: finished or aborted meanwhile.
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let full = self.full_key(key);
        if self.object_lock {
            return self.delete_versions(key, &full).await;
        }
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match self.map_err("delete", key, err) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}
