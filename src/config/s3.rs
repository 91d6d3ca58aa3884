//! `[sink.s3]`: the bucket, endpoint, credentials, part sizes and timeouts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};

/// Smallest part S3 accepts in a multipart upload (except the last).
pub const MIN_PART: usize = 5 * 1024 * 1024;

/// `[sink.s3]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (`snapshots/`); may be empty.
    pub prefix: String,
    /// Region (`garage` for Garage).
    pub region: String,
    /// Custom endpoint (`http://127.0.0.1:3900`); absent: AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most non-AWS stores.
    pub path_style: bool,
    /// Access key; absent: the standard AWS environment/profile chain.
    pub access_key_id: Option<String>,
    /// Secret key; absent: the standard chain.
    pub secret_access_key: Option<String>,
    /// Objects larger than this go up as multipart uploads.
    pub multipart_threshold: ByteSize,
    /// Size of each multipart part (at least 5MiB).
    pub multipart_chunk: ByteSize,
    /// Longest wait for a connection to the store.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (a hung connection ends here).
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Longest time one attempt of a store call may take.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Longest time a store call may take with the client's own retries.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// How long the start-up check waits (with back-off) for a store that
    /// cannot be reached yet, before it gives up.
    #[serde(with = "humantime_serde")]
    pub startup_wait: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            multipart_threshold: ByteSize(16 << 20),
            multipart_chunk: ByteSize(8 << 20),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(120),
            startup_wait: Duration::from_secs(120),
        }
    }
}

/// A size in bytes, written in a job file as `512`, `64KiB`, `8MiB` or `1GiB`
/// and read into bytes as the file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(usize),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Bytes(n) => Ok(ByteSize(n)),
            Written::Text(s) => parse_bytes(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.0 as u64)
    }
}

/// Parses `512`, `64KiB`, `8MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1024).
pub fn parse_bytes(s: &str) -> std::result::Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 512, 64KiB, 8MiB)"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

impl S3Config {
    /// Checks the settings that do not need the network.
    pub fn validate(&self) -> Result<()> {
        if self.bucket.is_empty() {
            return Err(Error::Config("sink.s3.bucket is required".into()));
        }
        let chunk = self.multipart_chunk.0;
        if chunk < MIN_PART {
            return Err(Error::Config(format!("sink.s3.multipart-chunk must be at least 5MiB (S3's minimum part size), got {chunk} bytes")));
        }
        self.timeouts()?;
        self.startup_wait()?;
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Error::Config(
                "sink.s3: give both access-key-id and secret-access-key, or neither".into(),
            ));
        }
        Ok(())
    }
}

fn positive(key: &str, value: Duration) -> Result<Duration> {
    if value.is_zero() {
        return Err(Error::Config(format!(
            "sink.s3.{key}: must be a positive duration (try 5s, 2m)"
        )));
    }
    Ok(value)
}

/// The S3 client's timeouts, read.
#[derive(Clone, Copy, Debug)]
pub struct S3Timeouts {
    /// Connecting to the store.
    pub connect: std::time::Duration,
    /// Waiting for a response's bytes.
    pub read: std::time::Duration,
    /// One attempt of an operation.
    pub attempt: std::time::Duration,
    /// A whole operation, retries included.
    pub operation: std::time::Duration,
}

impl S3Config {
    /// The timeouts, each a positive duration.
    pub fn timeouts(&self) -> Result<S3Timeouts> {
        Ok(S3Timeouts {
            connect: positive("connect-timeout", self.connect_timeout)?,
            read: positive("read-timeout", self.read_timeout)?,
            attempt: positive("attempt-timeout", self.attempt_timeout)?,
            operation: positive("operation-timeout", self.operation_timeout)?,
        })
    }

    /// How long to wait for the store at start.
    pub fn startup_wait(&self) -> Result<std::time::Duration> {
        positive("startup-wait", self.startup_wait)
    }
}
