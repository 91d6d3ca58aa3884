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

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::error::Error;
use crate::core::time::parse_duration;

pub use generator::{GeneratorConfig, Popularity};
pub use kafka::KafkaConfig;
pub use s3::S3Config;
pub use sections::{
    CatalogConfig, CheckpointConfig, DeadLetterConfig, FileConfig, JobSection, SinkConfig,
    SinkKind, SourceConfig, SourceKind, WindowConfig, DEFAULT_PARTITIONS,
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
        self.job.heartbeat_timeout()?;
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
        for bad in ["500ms", "soon"] {
            let text = format!("[job]\nheartbeat-timeout = \"{bad}\"\n");
            let err = JobConfig::parse(&text, []).expect_err(bad);
            assert!(err.to_string().contains("job.heartbeat-timeout"), "{err}");
        }
    }
}
