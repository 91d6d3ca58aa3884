//! Job configuration: built-in defaults, then the job file, then the environment.
//!
//! A job file is TOML with kebab-case keys; unknown keys are rejected with
//! the key's name, so a typo never silently falls back to a default. Any
//! value can be overridden from the environment as
//! `POPULARITY__<SECTION>__<KEY>=value` (double underscores between levels,
//! single underscores for dashes): `POPULARITY__WINDOW__ALLOWED_LATENESS=5m`.

//!
//! This is the layer above [`crate::core`] and below everything else: plain
//! section structs and their checks, nothing opened or connected here (the
//! job layer opens stores and sources from these sections).

pub mod generator;
pub mod kafka;
pub mod s3;
mod sections;
mod serve;

use std::convert::Infallible;
use std::path::Path;

use figment::util::nest;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use serde::{Deserialize, Serialize};

use crate::core::error::Error;

pub use generator::{GeneratorConfig, Popularity};
pub use kafka::KafkaConfig;
pub use s3::S3Config;
pub use sections::{
    CatalogConfig, CheckpointConfig, DeadLetterConfig, FileConfig, JobSection, SinkConfig,
    SinkKind, SourceConfig, SourceKind, WindowConfig, DEFAULT_PARTITIONS, MAX_READ_AHEAD,
};
pub use serve::{MetricsConfig, ServeLimits};

/// The embedded default job: generator in, local directory out.
pub const LOCAL_JOB: &str = include_str!("../../jobs/local.toml");

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
    pub model: crate::core::model::ModelConfig,
}

impl JobConfig {
    /// Parses a job from TOML text, applying `overrides` (`(KEY, value)` pairs
    /// as found in the environment) on top.
    pub fn parse(
        text: &str,
        overrides: impl IntoIterator<Item = (String, String)>,
    ) -> Result<JobConfig, Error> {
        let file: toml::Table = text
            .parse()
            .map_err(|e| Error::Config(format!("job file: {e}")))?;
        let file = Value::serialize(file).map_err(|e| Error::Config(format!("job file: {e}")))?;
        let mut layers = Figment::from(Layer::new("the job file", file));
        for (key, value) in overrides {
            if let Some(path) = env_path(&key)? {
                let value = value.parse().unwrap_or_else(|e: Infallible| match e {});
                let layer = Layer::new(format!("environment variable {key}"), nest(&path, value));
                layers = layers.merge(layer);
            }
        }
        let job: JobConfig = layers.extract().map_err(config_error)?;
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
        if self.source.batch == 0 {
            return Err(Error::Config("source.batch must be at least 1".into()));
        }
        if self.source.read_ahead > MAX_READ_AHEAD {
            return Err(Error::Config(format!(
                "source.read-ahead must be at most {MAX_READ_AHEAD} batches, got {}",
                self.source.read_ahead
            )));
        }
        self.job.heartbeat_timeout()?;
        if self.checkpoint.interval.is_zero() {
            return Err(Error::Config("checkpoint.interval must be positive".into()));
        }
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
        if self.metrics.provisional && !self.metrics.enabled {
            return Err(Error::Config(
                "metrics.provisional = true needs metrics.enabled = true: provisional counts are served on the endpoint".into(),
            ));
        }
        Ok(())
    }
}

/// The dotted key of an environment override (`POPULARITY__WINDOW__ALLOWED_LATENESS`
/// → `window.allowed-lateness`), or `None` for another variable.
fn env_path(key: &str) -> Result<Option<String>, Error> {
    let Some(path) = key.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    let parts: Vec<String> = path
        .split("__")
        .map(|p| p.to_ascii_lowercase().replace('_', "-"))
        .collect();
    if parts.iter().any(|p| p.is_empty() || p.contains('.')) {
        return Err(Error::Config(format!(
            "environment override {key}: empty or dotted key segment"
        )));
    }
    Ok(Some(parts.join(".")))
}

/// One source of settings (the job file, one environment variable), named
/// so that an error can say where a bad value came from.
struct Layer {
    name: String,
    data: Value,
}

impl Layer {
    fn new(name: impl Into<String>, data: Value) -> Layer {
        Layer {
            name: name.into(),
            data,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = self.data.clone().into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// A settings error as the user wrote it: key, what is wrong, and where
/// the value came from.
fn config_error(errors: figment::Error) -> Error {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let origin = e.metadata.as_ref().map(|m| format!(" (in {})", m.name));
            let key = e.path.join(".");
            let key = if key.is_empty() { "job".into() } else { key };
            format!("{key}: {}{}", e.kind, origin.unwrap_or_default())
        })
        .collect();
    Error::Config(lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::WindowSpec;

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
    fn a_read_ahead_past_its_bound_is_a_configuration_error() {
        let ok = JobConfig::parse("[source]\nread-ahead = 64\n", []).expect("at the bound");
        assert_eq!(ok.source.read_ahead, 64);
        let err = JobConfig::parse("[source]\nread-ahead = 100000000000\n", [])
            .expect_err("past the bound");
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(err.to_string().contains("source.read-ahead"), "{err}");
    }

    #[test]
    fn provisional_counts_need_the_endpoint() {
        let off = "[metrics]\nenabled = false\nprovisional = true\n";
        let err = JobConfig::parse(off, []).expect_err("nowhere to serve them");
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(err.to_string().contains("metrics.provisional"), "{err}");
        let on = JobConfig::parse("[metrics]\nprovisional = true\n", []).expect("valid");
        assert!(on.metrics.provisional);
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
        assert_eq!(job.window.lateness_ms(), 300_000);
        assert_eq!(job.source.generator.events, 123);
        let err = JobConfig::parse(
            "",
            vec![("POPULARITY__WINDOW__NOPE".to_string(), "1".to_string())],
        )
        .expect_err("unknown");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn durations_and_sizes_are_read_as_the_file_is_read() {
        let text = "[window]\nallowed-lateness = \"90s\"\n[sink.s3]\nmultipart-chunk = \"6MiB\"\nmultipart-threshold = 1024\n";
        let env = [(
            "POPULARITY__METRICS__LISTEN".to_string(),
            "0.0.0.0:9464".to_string(),
        )];
        let job = JobConfig::parse(text, env).expect("valid");
        assert_eq!(
            job.window.allowed_lateness,
            std::time::Duration::from_secs(90)
        );
        assert_eq!(job.sink.s3.multipart_chunk.0, 6 << 20);
        assert_eq!(job.sink.s3.multipart_threshold.0, 1024);
        assert_eq!(job.metrics.listen, "0.0.0.0:9464");
        let env = [(
            "POPULARITY__CHECKPOINT__INTERVAL".to_string(),
            "soon".to_string(),
        )];
        let err = JobConfig::parse("", env).expect_err("not a duration");
        let err = err.to_string();
        assert!(err.contains("checkpoint.interval"), "{err}");
        assert!(err.contains("POPULARITY__CHECKPOINT__INTERVAL"), "{err}");
        let err =
            JobConfig::parse("[sink.s3]\nmultipart-chunk = \"8XB\"\n", []).expect_err("not a size");
        assert!(err.to_string().contains("sink.s3.multipart-chunk"), "{err}");
    }

    #[test]
    fn bad_values_are_config_errors() {
        assert!(JobConfig::parse("[window]\nslide = \"7s\"\n", []).is_err());
        assert!(JobConfig::parse("[source]\nkind = \"file\"\n", []).is_err());
        assert!(JobConfig::parse("[source]\nkind = \"carrier-pigeon\"\n", []).is_err());
        for bad in ["500ms", "soon"] {
            let text = format!("[job]\nheartbeat-timeout = \"{bad}\"\n");
            let err = JobConfig::parse(&text, []).expect_err(bad);
            assert!(err.to_string().contains("job.heartbeat-timeout"), "{err}");
        }
    }
}
