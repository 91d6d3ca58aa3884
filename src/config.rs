//! Job configuration: built-in defaults, then the job file, then the environment.
//!
//! A job file is TOML with kebab-case keys; unknown keys are rejected with
//! the key's name, so a typo never silently falls back to a default. Any
//! value can be overridden from the environment as
//! `POPULARITY__<SECTION>__<KEY>=value` (double underscores between levels,
//! single underscores for dashes): `POPULARITY__WINDOW__ALLOWED_LATENESS=5m`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::generator::GeneratorConfig;
use crate::sink::s3::S3Config;
use crate::source::kafka::KafkaConfig;
use crate::time::{parse_duration, Millis, WindowSpec};

/// The embedded default job: generator in, local directory out.
pub const LOCAL_JOB: &str = include_str!("../jobs/local.toml");

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "POPULARITY__";

/// A whole job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct JobConfig {
    /// Identity of the job.
    pub job: JobSection,
    /// Where events come from.
    pub source: SourceConfig,
    /// The title hierarchy.
    pub catalog: CatalogConfig,
    /// Window geometry and lateness.
    pub window: WindowConfig,
    /// Where hourly snapshots go.
    pub sink: SinkConfig,
    /// Where rejected records go.
    pub dead_letter: DeadLetterConfig,
    /// Checkpoints (Kafka sources).
    pub checkpoint: CheckpointConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The popularity model.
    pub model: crate::model::ModelConfig,
}

/// `[metrics]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    /// Address to listen on. Port 0: any free port.
    pub listen: String,
    /// Offset the port by the process index (`-p`), so several processes on
    /// one host do not collide; off where each process has its own address (Kubernetes).
    pub port_per_process: bool,
    /// Open connections at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Largest request line plus headers (bytes); beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// Most header lines in a request; beyond it the answer is 431.
    pub max_headers: usize,
    /// Time a client has to send a whole request (line and headers).
    pub request_timeout: String,
    /// Requests one connection may carry before it is closed.
    pub keep_alive_requests: usize,
    /// Age at which a kept-alive connection is closed (after its request in flight).
    pub keep_alive_max_age: String,
    /// Threads that compute API answers and scrapes (health never waits for them).
    pub api_threads: usize,
    /// Time to wait for another process's share of a whole-job answer.
    pub peer_timeout: String,
    /// `/healthz` turns 503 when a worker has not stepped for this long.
    pub stall_timeout: String,
    /// Bearer token required on `/api/*` (and sent to peers): `env:VAR` or
    /// `file:/path`, never the token itself; empty for none.
    pub token: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            port_per_process: true,
            max_connections: 512,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            request_timeout: "10s".into(),
            keep_alive_requests: 1000,
            keep_alive_max_age: "5m".into(),
            api_threads: 4,
            peer_timeout: "5s".into(),
            stall_timeout: "2m".into(),
            token: String::new(),
        }
    }
}

/// `[metrics]` with its durations read and its token resolved.
#[derive(Clone)]
pub struct ServeLimits {
    /// See [`MetricsConfig::max_connections`].
    pub max_connections: usize,
    /// See [`MetricsConfig::max_header_bytes`].
    pub max_header_bytes: usize,
    /// See [`MetricsConfig::max_headers`].
    pub max_headers: usize,
    /// See [`MetricsConfig::request_timeout`].
    pub request_timeout: std::time::Duration,
    /// See [`MetricsConfig::keep_alive_requests`].
    pub keep_alive_requests: usize,
    /// See [`MetricsConfig::keep_alive_max_age`].
    pub keep_alive_max_age: std::time::Duration,
    /// See [`MetricsConfig::api_threads`].
    pub api_threads: usize,
    /// See [`MetricsConfig::peer_timeout`].
    pub peer_timeout: std::time::Duration,
    /// See [`MetricsConfig::stall_timeout`].
    pub stall_timeout: std::time::Duration,
    /// The bearer token, if one is required.
    pub token: Option<String>,
}

impl std::fmt::Debug for ServeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ServeLimits")
            .field("max_connections", &self.max_connections)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl MetricsConfig {
    /// Reads the limits and resolves the token; a bad value or a missing
    /// token source is a configuration error.
    pub fn limits(&self) -> Result<ServeLimits, Error> {
        let duration = |key: &str, v: &str| -> Result<std::time::Duration, Error> {
            match crate::time::parse_duration(v) {
                Ok(ms) if ms > 0 => Ok(std::time::Duration::from_millis(ms as u64)),
                _ => Err(Error::Config(format!(
                    "metrics.{key} `{v}`: a positive duration such as 10s or 2m"
                ))),
            }
        };
        let at_least = |key: &str, v: usize, min: usize| -> Result<usize, Error> {
            if v < min {
                return Err(Error::Config(format!(
                    "metrics.{key} is {v}; at least {min}"
                )));
            }
            Ok(v)
        };
        Ok(ServeLimits {
            max_connections: at_least("max-connections", self.max_connections, 4)?,
            // The HTTP parser needs 8 KiB of buffer at least.
            max_header_bytes: at_least("max-header-bytes", self.max_header_bytes, 8192)?,
            max_headers: at_least("max-headers", self.max_headers, 8)?,
            request_timeout: duration("request-timeout", &self.request_timeout)?,
            keep_alive_requests: at_least("keep-alive-requests", self.keep_alive_requests, 1)?,
            keep_alive_max_age: duration("keep-alive-max-age", &self.keep_alive_max_age)?,
            api_threads: at_least("api-threads", self.api_threads, 1)?,
            peer_timeout: duration("peer-timeout", &self.peer_timeout)?,
            stall_timeout: duration("stall-timeout", &self.stall_timeout)?,
            token: self.resolve_token()?,
        })
    }

    fn resolve_token(&self) -> Result<Option<String>, Error> {
        let t = self.token.trim();
        let token = if t.is_empty() {
            return Ok(None);
        } else if let Some(var) = t.strip_prefix("env:") {
            std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "metrics.token wants environment variable {var}, which is not set"
                ))
            })?
        } else if let Some(path) = t.strip_prefix("file:") {
            std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("metrics.token: reading the token file {path}: {e}"))
            })?
        } else {
            return Err(Error::Config(
                "metrics.token takes `env:VAR` or `file:/path`, not the token itself (job files end up in logs and ConfigMaps)".into(),
            ));
        };
        let token = token.trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(
                "metrics.token: the token is empty or has characters a header cannot carry".into(),
            ));
        }
        Ok(Some(token))
    }

    /// The address for process `index`.
    pub fn address(&self, index: usize) -> Result<String, Error> {
        let (host, port) = self.listen.rsplit_once(':').ok_or_else(|| {
            Error::Config(format!("metrics.listen `{}` needs host:port", self.listen))
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| Error::Config(format!("metrics.listen `{}`: bad port", self.listen)))?;
        let offset = if self.port_per_process {
            index as u16
        } else {
            0
        };
        let port = if port == 0 {
            0
        } else {
            port.checked_add(offset)
                .ok_or_else(|| Error::Config("metrics port overflow".into()))?
        };
        Ok(format!("{host}:{port}"))
    }
}

/// `[checkpoint]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CheckpointConfig {
    /// Take checkpoints and restore from them (Kafka sources with a store).
    pub enabled: bool,
    /// Processing time between checkpoints.
    pub interval: String,
    /// Complete checkpoints to keep.
    pub keep: usize,
    /// How long a stopping job waits for its final checkpoint to complete.
    pub stop_timeout: String,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            enabled: true,
            interval: "1m".into(),
            keep: 3,
            stop_timeout: "60s".into(),
        }
    }
}

impl CheckpointConfig {
    /// `stop-timeout` as a duration.
    pub fn stop_limit(&self) -> Result<std::time::Duration, Error> {
        parse_duration(&self.stop_timeout)
            .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64))
            .map_err(|e| Error::Config(format!("checkpoint.stop-timeout: {e}")))
    }
}

/// `[job]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct JobSection {
    /// Name, used in logs and in checkpoint paths.
    pub name: String,
    /// How long a process of a multi-process job waits for its peers to
    /// connect before it gives up with an error (a peer that failed to start
    /// would otherwise leave it waiting forever).
    pub connect_timeout: String,
}

impl Default for JobSection {
    fn default() -> Self {
        JobSection {
            name: "popularity".into(),
            connect_timeout: "120s".into(),
        }
    }
}

impl JobSection {
    /// `connect-timeout` in milliseconds.
    pub fn connect_timeout_ms(&self) -> Result<Millis, Error> {
        parse_duration(&self.connect_timeout)
            .map_err(|e| Error::Config(format!("job.connect-timeout: {e}")))
    }
}

/// Which source feeds the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The in-process generator.
    Generator,
    /// A JSON-lines file (replay, backfill).
    File,
    /// A Kafka topic.
    Kafka,
}

/// `[source]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SourceConfig {
    /// Which source.
    pub kind: SourceKind,
    /// Records pulled per batch.
    pub batch: usize,
    /// How far past the wall clock an event time may be before it is
    /// rejected (`out_of_range`). Minutes suit live traffic; a replay of
    /// future-dated test data needs more (e.g. `"400d"`).
    pub max_future: String,
    /// Generator settings.
    pub generator: GeneratorConfig,
    /// File settings.
    pub file: FileConfig,
    /// Kafka settings.
    pub kafka: KafkaConfig,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Generator,
            batch: 16_384,
            max_future: "15m".into(),
            generator: GeneratorConfig::default(),
            file: FileConfig::default(),
            kafka: KafkaConfig::default(),
        }
    }
}

/// `[source.file]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct FileConfig {
    /// The JSON-lines file; cut into `partitions` byte ranges.
    pub path: PathBuf,
    /// Partitions (byte ranges, each with its own watermark) the file is
    /// cut into, whatever the number of workers: partition `p` is read by
    /// worker `p mod workers`, so the same file gives the same hours on any
    /// parallelism.
    pub partitions: usize,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: PathBuf::new(),
            partitions: crate::source::DEFAULT_PARTITIONS,
        }
    }
}

/// `[catalog]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CatalogConfig {
    /// A JSON-lines catalog; when absent one is synthesized.
    pub path: Option<PathBuf>,
    /// Size of the synthesized catalog.
    pub titles: usize,
    /// Seed of the synthesized catalog.
    pub seed: u64,
    /// Re-read `path` when it changes and apply the differences (embedded mode).
    pub reload: bool,
    /// A compacted Kafka topic of catalog updates (key: title id; value: the
    /// title as JSON, optionally as `{"title": ..., "effective_at": ms}`;
    /// no value: the title is removed). Uses `source.kafka`'s brokers and properties.
    pub topic: Option<String>,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            path: None,
            titles: 20_000,
            seed: 7,
            reload: false,
            topic: None,
        }
    }
}

/// `[window]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct WindowConfig {
    /// Window width.
    pub size: String,
    /// How often the window moves (the pane).
    pub slide: String,
    /// How far behind the newest event an event may be and still count.
    pub allowed_lateness: String,
    /// How many panes the sources may run ahead of the slowest worker.
    pub max_lead_panes: u64,
    /// How far past a partition's clock a record may be and still move it
    /// alone; records further ahead wait for corroboration ([`crate::clock`]).
    pub max_jump: String,
    /// Records further ahead than `max-jump` that must agree before a
    /// partition's clock jumps to them.
    pub jump_quorum: usize,
    /// Records of its partition a held record waits for corroboration before
    /// it is dead-lettered as `clock_skew`.
    pub jump_patience: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            size: "1h".into(),
            slide: "1m".into(),
            allowed_lateness: "2m".into(),
            max_lead_panes: 60,
            max_jump: "1m".into(),
            jump_quorum: 16,
            jump_patience: 1_000,
        }
    }
}

/// Which store receives snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// A local directory.
    Local,
    /// An S3 bucket (`[sink.s3]`).
    S3,
    /// Nothing is written (benchmarks).
    None,
}

/// `[sink]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SinkConfig {
    /// Which store.
    pub kind: SinkKind,
    /// Root directory of the local store.
    pub path: PathBuf,
    /// The S3 store.
    pub s3: S3Config,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Local,
            path: PathBuf::from("out/snapshots"),
            s3: S3Config::default(),
        }
    }
}

/// `[dead-letter]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DeadLetterConfig {
    /// Directory of per-worker JSON-lines files.
    pub path: PathBuf,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            path: PathBuf::from("out/dead-letters"),
        }
    }
}

impl WindowConfig {
    /// The validated window geometry.
    pub fn spec(&self) -> Result<WindowSpec, Error> {
        let size =
            parse_duration(&self.size).map_err(|e| Error::Config(format!("window.size: {e}")))?;
        let slide =
            parse_duration(&self.slide).map_err(|e| Error::Config(format!("window.slide: {e}")))?;
        WindowSpec::new(size, slide).map_err(|e| Error::Config(format!("window: {e}")))
    }

    /// Allowed lateness in ms.
    pub fn lateness_ms(&self) -> Result<Millis, Error> {
        parse_duration(&self.allowed_lateness)
            .map_err(|e| Error::Config(format!("window.allowed-lateness: {e}")))
    }

    /// The rule each partition's clock follows.
    pub fn clock_rule(&self) -> Result<crate::clock::ClockRule, Error> {
        let max_jump_ms = parse_duration(&self.max_jump)
            .map_err(|e| Error::Config(format!("window.max-jump: {e}")))?;
        if self.jump_quorum == 0 || self.jump_patience == 0 {
            return Err(Error::Config(
                "window.jump-quorum and window.jump-patience must be at least 1".into(),
            ));
        }
        Ok(crate::clock::ClockRule {
            lateness_ms: self.lateness_ms()?,
            max_jump_ms,
            quorum: self.jump_quorum,
            patience: self.jump_patience,
        })
    }
}

impl SourceConfig {
    /// The future tolerance in ms.
    pub fn max_future_ms(&self) -> Result<Millis, Error> {
        parse_duration(&self.max_future)
            .map_err(|e| Error::Config(format!("source.max-future: {e}")))
    }
}

impl SinkConfig {
    /// Opens the configured store (for S3: connects and checks the bucket).
    pub fn open(
        &self,
    ) -> Result<Option<std::sync::Arc<dyn crate::sink::store::ObjectStore>>, Error> {
        use std::sync::Arc;
        Ok(match self.kind {
            SinkKind::Local => {
                let store = crate::sink::store::LocalStore::new(&self.path)?;
                let swept = store.sweep()?;
                if swept > 0 {
                    tracing::info!(swept, path = %self.path.display(), "removed temp files of unfinished writes");
                }
                Some(Arc::new(store))
            }
            SinkKind::S3 => Some(Arc::new(crate::sink::s3::S3Store::connect(&self.s3)?)),
            SinkKind::None => None,
        })
    }
}

impl JobConfig {
    /// Parses a job from TOML text, applying `overrides` (`(KEY, value)` pairs
    /// as found in the environment) on top.
    pub fn parse(
        text: &str,
        overrides: impl IntoIterator<Item = (String, String)>,
    ) -> Result<JobConfig, Error> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e| Error::Config(format!("job file: {e}")))?;
        for (key, value) in overrides {
            let Some(path) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let parts: Vec<String> = path
                .split("__")
                .map(|p| p.to_ascii_lowercase().replace('_', "-"))
                .collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(Error::Config(format!(
                    "environment override {key}: empty key segment"
                )));
            }
            set_path(&mut doc, &parts, parse_scalar(&value))
                .map_err(|e| Error::Config(format!("environment override {key}: {e}")))?;
        }
        let job: JobConfig = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(format!("job file: {}", e.message())))?;
        job.validate()?;
        Ok(job)
    }

    /// Loads a job file (or the embedded default) with environment overrides.
    pub fn load(path: Option<&Path>) -> Result<JobConfig, Error> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| Error::io(format!("reading job file {}", p.display()), e))?,
            None => LOCAL_JOB.to_string(),
        };
        JobConfig::parse(&text, std::env::vars())
    }

    /// Checks values that types alone do not.
    pub fn validate(&self) -> Result<(), Error> {
        self.window.spec()?;
        self.window.clock_rule()?;
        self.source.max_future_ms()?;
        if self.source.batch == 0 {
            return Err(Error::Config("source.batch must be at least 1".into()));
        }
        self.job.connect_timeout_ms()?;
        parse_duration(&self.checkpoint.interval)
            .map_err(|e| Error::Config(format!("checkpoint.interval: {e}")))?;
        self.checkpoint.stop_limit()?;
        if self.sink.kind == SinkKind::S3 {
            self.sink.s3.validate()?;
        }
        if self.source.kind == SourceKind::Kafka {
            self.source.kafka.validate()?;
        }
        if self.source.kind == SourceKind::File && self.source.file.path.as_os_str().is_empty() {
            return Err(Error::Config(
                "source.kind = \"file\" needs source.file.path".into(),
            ));
        }
        Ok(())
    }
}

fn parse_scalar(s: &str) -> toml::Value {
    if let Ok(i) = s.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = s.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match s {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(s.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{first}` is not a table")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let job = JobConfig::parse(LOCAL_JOB, []).expect("embedded job is valid");
        assert_eq!(job.source.kind, SourceKind::Generator);
        assert_eq!(job.window.spec().expect("valid"), WindowSpec::hourly());
    }

    #[test]
    fn shipped_job_files_parse() {
        for path in ["jobs/local.toml", "jobs/kafka.toml", "jobs/replay.toml"] {
            let text = std::fs::read_to_string(path).expect("job file");
            JobConfig::parse(&text, []).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err =
            JobConfig::parse("[window]\nsize = \"1h\"\nslid = \"1m\"\n", []).expect_err("typo");
        assert!(err.to_string().contains("slid"), "{err}");
        let err = JobConfig::parse("[windw]\n", []).expect_err("typo");
        assert!(err.to_string().contains("windw"), "{err}");
    }

    #[test]
    fn environment_overrides_win() {
        let env = vec![
            (
                "POPULARITY__WINDOW__ALLOWED_LATENESS".to_string(),
                "5m".to_string(),
            ),
            (
                "POPULARITY__SOURCE__GENERATOR__EVENTS".to_string(),
                "123".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let job = JobConfig::parse("[window]\nallowed-lateness = \"1m\"\n", env).expect("valid");
        assert_eq!(job.window.lateness_ms().expect("valid"), 300_000);
        assert_eq!(job.source.generator.events, 123);
        let err = JobConfig::parse(
            "",
            vec![("POPULARITY__WINDOW__NOPE".to_string(), "1".to_string())],
        )
        .expect_err("unknown");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn bad_values_are_config_errors() {
        assert!(JobConfig::parse("[window]\nslide = \"7s\"\n", []).is_err());
        assert!(JobConfig::parse("[source]\nkind = \"file\"\n", []).is_err());
        assert!(JobConfig::parse("[source]\nkind = \"carrier-pigeon\"\n", []).is_err());
    }
}
