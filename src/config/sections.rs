//! The job file's plain sections: job, source, file, catalog, window, sink,
//! dead letters and checkpoints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{GeneratorConfig, KafkaConfig, S3Config};

/// Partitions a file or the generator is cut into by default: independent
/// of the number of workers, and divisible by 1, 2, 4, 8 and 16 of them.
pub const DEFAULT_PARTITIONS: usize = 16;
use crate::core::error::Error;
use std::time::Duration;

use crate::core::time::{millis, Millis, WindowSpec};

/// `[checkpoint]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CheckpointConfig {
    /// Take checkpoints and restore from them (Kafka sources with a store).
    pub enabled: bool,
    /// Processing time between checkpoints.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Complete checkpoints to keep.
    pub keep: usize,
    /// How long a stopping job waits for its final checkpoint to complete.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            enabled: true,
            interval: Duration::from_secs(60),
            keep: 3,
            stop_timeout: Duration::from_secs(60),
        }
    }
}

impl CheckpointConfig {
    /// `stop-timeout` as a duration.
    pub fn stop_limit(&self) -> Duration {
        self.stop_timeout
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
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a process of a multi-process job lets a peer go without
    /// acknowledging what it was sent (or answering a probe) before it
    /// gives up on the peer and stops: a peer that is cut off closes no
    /// connection, and would otherwise be waited for forever.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
}

impl Default for JobSection {
    fn default() -> Self {
        JobSection {
            name: "popularity".into(),
            connect_timeout: Duration::from_secs(120),
            heartbeat_timeout: Duration::from_secs(20),
        }
    }
}

impl JobSection {
    /// `connect-timeout` in milliseconds.
    pub fn connect_timeout_ms(&self) -> Millis {
        millis(self.connect_timeout)
    }

    /// `heartbeat-timeout`, at least one second.
    pub fn heartbeat_timeout(&self) -> Result<Duration, Error> {
        if self.heartbeat_timeout < Duration::from_secs(1) {
            return Err(Error::Config(
                "job.heartbeat-timeout: must be at least 1s".into(),
            ));
        }
        Ok(self.heartbeat_timeout)
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
    /// Batches a worker's source reads ahead on a thread of its own, so
    /// fetching and decoding overlap the dataflow; 0 reads in the worker.
    pub read_ahead: usize,
    /// How far past the wall clock an event time may be before it is
    /// rejected (`out_of_range`). Minutes suit live traffic; a replay of
    /// future-dated test data needs more (e.g. `"400d"`).
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
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
            read_ahead: 2,
            max_future: Duration::from_secs(15 * 60),
            generator: GeneratorConfig::default(),
            file: FileConfig::default(),
            kafka: KafkaConfig::default(),
        }
    }
}

/// Most batches a source may read ahead of its worker: each is a queue
/// slot allocated up front, and more than a few buy nothing.
pub const MAX_READ_AHEAD: usize = 64;

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
            partitions: DEFAULT_PARTITIONS,
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
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    /// How often the window moves (the pane).
    #[serde(with = "humantime_serde")]
    pub slide: Duration,
    /// How far behind the newest event an event may be and still count.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// How many panes the sources may run ahead of the slowest worker.
    pub max_lead_panes: u64,
    /// How far past a partition's clock a record may be and still move it
    /// alone; records further ahead wait for corroboration ([`crate::core::clock`]).
    #[serde(with = "humantime_serde")]
    pub max_jump: Duration,
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
            size: Duration::from_secs(3600),
            slide: Duration::from_secs(60),
            allowed_lateness: Duration::from_secs(120),
            max_lead_panes: 60,
            max_jump: Duration::from_secs(60),
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
        WindowSpec::new(millis(self.size), millis(self.slide))
            .map_err(|e| Error::Config(format!("window: {e}")))
    }

    /// Allowed lateness in ms.
    pub fn lateness_ms(&self) -> Millis {
        millis(self.allowed_lateness)
    }

    /// The rule each partition's clock follows.
    pub fn clock_rule(&self) -> Result<crate::core::clock::ClockRule, Error> {
        if self.jump_quorum == 0 || self.jump_patience == 0 {
            return Err(Error::Config(
                "window.jump-quorum and window.jump-patience must be at least 1".into(),
            ));
        }
        Ok(crate::core::clock::ClockRule {
            lateness_ms: self.lateness_ms(),
            max_jump_ms: millis(self.max_jump),
            quorum: self.jump_quorum,
            patience: self.jump_patience,
        })
    }
}

impl SourceConfig {
    /// The future tolerance in ms.
    pub fn max_future_ms(&self) -> Millis {
        millis(self.max_future)
    }
}
