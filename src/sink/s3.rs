//! An S3 object store (AWS S3, or anything speaking its API, such as Garage).
//!
//! The SDK is async; the store owns a small Tokio runtime and blocks on it,
//! and is only ever called from the uploader threads of [`super::uploader`],
//! never from a dataflow worker, so a slow store cannot stall event
//! processing. Objects above `multipart-threshold` go up as multipart
//! uploads in `multipart-chunk` parts (at least 5 MiB, as S3 requires);
//! a failed multipart upload is aborted so none are left behind.

use super::store::ObjectStore;
pub use crate::config::s3::{parse_bytes, ByteSize, S3Config, MIN_PART};
use crate::core::backoff::Backoff;
use crate::core::error::{Error, Result};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// The SDK's timeout settings from the job's.
fn timeouts(cfg: &S3Config) -> Result<aws_config::timeout::TimeoutConfig> {
    let t = cfg.timeouts()?;
    Ok(aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(t.connect)
        .read_timeout(t.read)
        .operation_attempt_timeout(t.attempt)
        .operation_timeout(t.operation)
        .build())
}

/// A bucket (and prefix) in an S3 store.
pub struct S3Store {
    client: Client,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    endpoint: String,
    threshold: usize,
    chunk: usize,
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    what: &str,
    err: SdkError<E, R>,
    status: Option<u16>,
) -> Error {
    let (retryable, message) = match &err {
        SdkError::ConstructionFailure(_) => (
            false,
            format!("{what}: could not build the request: {err:?}"),
        ),
        SdkError::TimeoutError(_) => (true, format!("{what}: {}", crate::core::error::TIMED_OUT)),
        SdkError::DispatchFailure(e) => {
            let chain = e
                .as_connector_error()
                .map_or_else(|| format!("{e:?}"), |c| DisplayErrorContext(c).to_string());
            // A certificate nothing here trusts is refused again on every
            // try: the operator's to fix, not a store to wait for.
            if chain.contains("certificate") {
                return Error::Config(format!(
                    "{what}: the store's TLS certificate was refused ({chain}); trust the CA that signed it (SSL_CERT_FILE, or the system's trust store) or correct sink.s3.endpoint"
                ));
            }
            (true, format!("{what}: could not reach the store: {chain}"))
        }
        SdkError::ResponseError(_) => (true, format!("{what}: unreadable response")),
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("unknown");
            let msg = e.err().message().unwrap_or("");
            let s = status.unwrap_or(0);
            (
                s >= 500 || s == 429 || code == "SlowDown" || code == "RequestTimeout",
                format!("{what}: {code} (HTTP {s}) {msg}"),
            )
        }
        other => (true, format!("{what}: {other:?}")),
    };
    Error::External {
        system: "s3",
        message,
        retryable,
    }
}

fn status<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

impl S3Store {
    /// Connects and checks that the bucket exists and the credentials may use it:
    /// a wrong bucket or key is reported now, not an hour later.
    pub fn connect(cfg: &S3Config) -> Result<S3Store> {
        cfg.validate()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the S3 client runtime", e))?;
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https)
            .region(Region::new(cfg.region.clone()))
            .timeout_config(timeouts(cfg)?);
        if let Some(ep) = &cfg.endpoint {
            loader = loader.endpoint_url(ep);
        }
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader =
                loader.credentials_provider(Credentials::new(id, secret, None, None, "job-file"));
        }
        let shared = runtime.block_on(loader.load());
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.path_style)
            .build();
        let store = S3Store {
            client: Client::from_conf(conf),
            runtime,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.trim_end_matches('/').to_string(),
            endpoint: cfg.endpoint.clone().unwrap_or_else(|| "AWS".into()),
            threshold: cfg.multipart_threshold.0,
            chunk: cfg.multipart_chunk.0,
        };
        store.wait_for_bucket(cfg.startup_wait()?)?;
        Ok(store)
    }

    /// Checks the bucket, waiting with back-off while the store cannot be
    /// reached (it may be starting beside the job), for at most `limit`.
    fn wait_for_bucket(&self, limit: std::time::Duration) -> Result<()> {
        let began = std::time::Instant::now();
        let mut backoff = Backoff::new(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(5),
        );
        loop {
            match self.check_bucket() {
                Err(e) if e.retryable() && began.elapsed() + backoff.peek() < limit => {
                    let wait = backoff.next_wait();
                    tracing::warn!(error = %e, retry_in = ?wait, waited = ?began.elapsed(), "the store cannot be reached yet; waiting (sink.s3.startup-wait)");
                    std::thread::sleep(wait);
                }
                Err(e) if e.retryable() => {
                    return Err(e.with(&format!(
                        "still unreachable after sink.s3.startup-wait ({limit:?})"
                    )))
                }
                other => return other,
            }
        }
    }

    fn check_bucket(&self) -> Result<()> {
        let result = self
            .runtime
            .block_on(self.client.head_bucket().bucket(&self.bucket).send());
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let s = status(&e);
                match s {
                    Some(404) => Err(Error::Config(format!("S3 bucket `{}` does not exist at {}", self.bucket, self.endpoint))),
                    Some(403) | Some(401) => Err(Error::Config(format!(
                        "S3 credentials were refused for bucket `{}` at {} (check the key and its permissions)",
                        self.bucket, self.endpoint
                    ))),
                    _ => Err(classify(&format!("checking bucket `{}` at {}", self.bucket, self.endpoint), e, s)),
                }
            }
        }
    }

    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Uploads `bytes` in parts of the configured chunk size; aborts on failure.
    pub fn put_multipart(&self, key: &str, bytes: &[u8]) -> Result<usize> {
        let full = self.key(key);
        let rt = &self.runtime;
        let created = rt
            .block_on(
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .send(),
            )
            .map_err(|e| {
                let s = status(&e);
                classify(&format!("starting multipart upload of {full}"), e, s)
            })?;
        let upload_id = created.upload_id().ok_or_else(|| Error::External {
            system: "s3",
            message: format!("no upload id for {full}"),
            retryable: true,
        })?;
        let result = (|| -> Result<usize> {
            let mut parts = Vec::new();
            for (i, chunk) in bytes.chunks(self.chunk).enumerate() {
                let number = i as i32 + 1;
                let out = rt
                    .block_on(
                        self.client
                            .upload_part()
                            .bucket(&self.bucket)
                            .key(&full)
                            .upload_id(upload_id)
                            .part_number(number)
                            .body(ByteStream::from(chunk.to_vec()))
                            .send(),
                    )
                    .map_err(|e| {
                        let s = status(&e);
                        classify(&format!("uploading part {number} of {full}"), e, s)
                    })?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                );
            }
            let n = parts.len();
            rt.block_on(
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send(),
            )
            .map_err(|e| {
                let s = status(&e);
                classify(&format!("completing multipart upload of {full}"), e, s)
            })?;
            Ok(n)
        })();
        if result.is_err() {
            // Leave no half-finished upload behind; if this fails too, the
            // bucket's lifecycle rule for incomplete uploads is the backstop.
            let abort = rt.block_on(
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(upload_id)
                    .send(),
            );
            if let Err(e) = abort {
                tracing::warn!(key = %full, error = ?e, "could not abort multipart upload");
            }
        }
        result
    }

    /// Multipart uploads in progress under the store's prefix (should be none).
    pub fn pending_multipart(&self) -> Result<usize> {
        let out = self
            .runtime
            .block_on(
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .send(),
            )
            .map_err(|e| {
                let s = status(&e);
                classify("listing multipart uploads", e, s)
            })?;
        Ok(out.uploads().len())
    }

    /// The ETag of an object (multipart objects end in `-<parts>`).
    pub fn etag(&self, key: &str) -> Result<Option<String>> {
        let full = self.key(key);
        match self.runtime.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(&full)
                .send(),
        ) {
            Ok(o) => Ok(o.e_tag().map(str::to_string)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => {
                let s = status(&e);
                Err(classify(&format!("head {full}"), e, s))
            }
        }
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.threshold && bytes.len() > self.chunk {
            self.put_multipart(key, bytes)?;
            return Ok(());
        }
        let full = self.key(key);
        self.runtime
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .body(ByteStream::from(bytes.to_vec()))
                    .send(),
            )
            .map_err(|e| {
                let s = status(&e);
                classify(&format!("putting {full}"), e, s)
            })?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.key(key);
        let out = match self.runtime.block_on(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .send(),
        ) {
            Ok(o) => o,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => {
                let s = status(&e);
                return Err(classify(&format!("getting {full}"), e, s));
            }
        };
        let body = self
            .runtime
            .block_on(out.body.collect())
            .map_err(|e| Error::External {
                system: "s3",
                message: format!("reading {full}: {e}"),
                retryable: true,
            })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.key(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let out = self.runtime.block_on(req.send()).map_err(|e| {
                let s = status(&e);
                classify(&format!("listing {full}"), e, s)
            })?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter(|k| k.len() >= strip)
                    .map(|k| k[strip..].to_string()),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let full = self.key(key);
        self.runtime
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .send(),
            )
            .map_err(|e| {
                let s = status(&e);
                classify(&format!("deleting {full}"), e, s)
            })?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_validation() {
        assert_eq!(parse_bytes("8MiB"), Ok(8 << 20));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert!(parse_bytes("8XB").is_err());
        let mut c = S3Config {
            bucket: "b".into(),
            ..S3Config::default()
        };
        assert!(c.validate().is_ok());
        c.multipart_chunk = ByteSize(1 << 20);
        assert!(c.validate().is_err(), "parts below 5 MiB are refused by S3");
        c.multipart_chunk = ByteSize(5 << 20);
        c.access_key_id = Some("k".into());
        assert!(c.validate().is_err(), "a key without its secret");
    }
}
