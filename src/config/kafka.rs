//! `[source.kafka]`: where the brokers and topic are, and the clients' properties.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};

/// Where to start a partition that has no checkpointed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    /// The oldest retained record.
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// When the source is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Until {
    /// Never: a streaming job.
    Never,
    /// At the end offsets the broker reports at start-up (backfills).
    End,
    /// When a partition has been silent for `idle-timeout` after reaching
    /// the end offset the broker reports (replays against brokers whose
    /// reported end offsets cannot be trusted; tests).
    Idle,
}

/// What to do when a partition's next offset is no longer in its log (the
/// topic was recreated, or retention or truncation passed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnLostOffsets {
    /// Stop with an error that names the partition and the offsets.
    Fail,
    /// Go on from the oldest record still in the log, counting what was skipped.
    Earliest,
    /// Go on from the newest offset, counting what was skipped.
    Latest,
}

/// `[source.kafka]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The watch-event topic.
    pub topic: String,
    /// Where partitions without a checkpoint start.
    pub start: StartAt,
    /// When to stop.
    pub until: Until,
    /// A partition silent this long stops holding the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Topic for dead letters (reason, partition and offset in headers).
    pub dead_letter_topic: String,
    /// Attempts to reach the brokers at start before giving up.
    pub connect_attempts: u32,
    /// First back-off between attempts; doubles each time.
    #[serde(with = "humantime_serde")]
    pub connect_backoff: Duration,
    /// Extra librdkafka properties for every client (`"fetch.max.bytes" = "…"`).
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values come from environment variables
    /// (`"sasl.password" = "KAFKA_SASL_PASSWORD"`): secrets stay out of job files and logs.
    pub secret_properties: BTreeMap<String, String>,
    /// When a partition's next offset is outside its log: `fail`, `earliest` or `latest`.
    pub on_lost_offsets: OnLostOffsets,
    /// How often the topic's partition list is fetched again, to read new partitions.
    #[serde(with = "humantime_serde")]
    pub metadata_refresh: Duration,
    /// Largest dead letter (payload and headers) sent to the dead-letter
    /// topic; a larger one is truncated to fit. Keep it under the topic's
    /// `max.message.bytes`.
    pub dead_letter_max_bytes: usize,
    /// How long a dead letter may take to be acknowledged before it is
    /// written to the local spool instead.
    #[serde(with = "humantime_serde")]
    pub dead_letter_timeout: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "watch-events".into(),
            start: StartAt::Earliest,
            until: Until::Never,
            idle_timeout: Duration::from_secs(30),
            dead_letter_topic: "watch-events-dead-letters".into(),
            connect_attempts: 6,
            connect_backoff: Duration::from_millis(250),
            properties: BTreeMap::new(),
            secret_properties: BTreeMap::new(),
            on_lost_offsets: OnLostOffsets::Fail,
            metadata_refresh: Duration::from_secs(30),
            dead_letter_max_bytes: 1_000_000,
            dead_letter_timeout: Duration::from_secs(30),
        }
    }
}

impl KafkaConfig {
    /// Fails if a secret property's environment variable is missing (checked when connecting).
    pub fn check_secrets(&self) -> Result<()> {
        for (k, var) in &self.secret_properties {
            if std::env::var(var).is_err() {
                return Err(Error::Config(format!("source.kafka.secret-properties: `{k}` wants environment variable {var}, which is not set")));
            }
        }
        Ok(())
    }

    /// Checks the sizes fit and the topic is named.
    pub fn validate(&self) -> Result<()> {
        if self.dead_letter_max_bytes < MIN_DEAD_LETTER_BYTES {
            return Err(Error::Config(format!(
                "source.kafka.dead-letter-max-bytes: {} is below the {MIN_DEAD_LETTER_BYTES} bytes a dead letter's headers may need",
                self.dead_letter_max_bytes
            )));
        }
        if self.topic.is_empty() || self.brokers.is_empty() {
            return Err(Error::Config("source.kafka needs brokers and topic".into()));
        }
        Ok(())
    }
}

/// The smallest `dead-letter-max-bytes`: room for the bounded headers and some payload.
pub const MIN_DEAD_LETTER_BYTES: usize = 8 * 1024;
