//! Kafka as the source of watch events, and the producer `generate` uses.
//!
//! Partitions are assigned explicitly: partition `p` of the topic is read by
//! global worker `p mod workers`, so every partition has exactly one reader
//! across all processes and there is no consumer-group rebalancing to
//! reason about. Records of all partitions come through one queue, each
//! tagged with its partition; watermarks (and checkpoints) are kept per
//! partition. Payloads are decoded straight from librdkafka's buffers: no
//! per-message allocation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{Batch, PartitionId, Poll, Source};
use crate::error::{Error, Result};
use crate::event::Validation;
use crate::sink::deadletter::{DeadLetter, DeadLetterSink};
use crate::time::parse_duration;

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
    pub idle_timeout: String,
    /// Topic for dead letters (reason, partition and offset in headers).
    pub dead_letter_topic: String,
    /// Attempts to reach the brokers at start before giving up.
    pub connect_attempts: u32,
    /// First back-off between attempts; doubles each time.
    pub connect_backoff: String,
    /// Extra librdkafka properties for every client (`"fetch.max.bytes" = "…"`).
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values come from environment variables
    /// (`"sasl.password" = "KAFKA_SASL_PASSWORD"`): secrets stay out of job files and logs.
    pub secret_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "watch-events".into(),
            start: StartAt::Earliest,
            until: Until::Never,
            idle_timeout: "30s".into(),
            dead_letter_topic: "watch-events-dead-letters".into(),
            connect_attempts: 6,
            connect_backoff: "250ms".into(),
            properties: BTreeMap::new(),
            secret_properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// A client configuration with the brokers and the job's properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        self.apply_properties(&mut c);
        c
    }

    /// Fails if a secret property's environment variable is missing (checked when connecting).
    pub fn check_secrets(&self) -> Result<()> {
        for (k, var) in &self.secret_properties {
            if std::env::var(var).is_err() {
                return Err(Error::Config(format!("source.kafka.secret-properties: `{k}` wants environment variable {var}, which is not set")));
            }
        }
        Ok(())
    }

    fn apply_properties(&self, c: &mut ClientConfig) {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        for (k, var) in &self.secret_properties {
            if let Ok(v) = std::env::var(var) {
                c.set(k, v);
            }
        }
    }

    /// Checks the durations parse.
    pub fn validate(&self) -> Result<()> {
        parse_duration(&self.idle_timeout)
            .map_err(|e| Error::Config(format!("source.kafka.idle-timeout: {e}")))?;
        parse_duration(&self.connect_backoff)
            .map_err(|e| Error::Config(format!("source.kafka.connect-backoff: {e}")))?;
        if self.topic.is_empty() || self.brokers.is_empty() {
            return Err(Error::Config("source.kafka needs brokers and topic".into()));
        }
        Ok(())
    }
}

/// Errors librdkafka reported for this process's clients (it retries most
/// of them itself): `popularity_kafka_client_errors_total`.
static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Errors librdkafka has reported so far in this process.
pub fn client_errors() -> u64 {
    CLIENT_ERRORS.load(Ordering::Relaxed)
}

/// The consumers' context: librdkafka's own log lines go to the job's log
/// (target `librdkafka`), and its errors are logged and counted. Both are
/// delivered while the consumer is polled.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
    }
}

impl ConsumerContext for LogContext {}

/// The job's consumers.
type JobConsumer = BaseConsumer<LogContext>;

fn kafka_err(message: String, retryable: bool) -> Error {
    Error::External {
        system: "kafka",
        message,
        retryable,
    }
}

/// Progress of one partition, for lag reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionProgress {
    /// Next offset to read.
    pub next_offset: i64,
    /// The partition's high watermark when last asked.
    pub high_watermark: i64,
}

impl PartitionProgress {
    /// Records not yet read.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.next_offset).max(0)
    }
}

/// Per-partition progress of every Kafka source in the process.
pub type ProgressBoard = Arc<Mutex<BTreeMap<PartitionId, PartitionProgress>>>;

/// Lists the topic's partitions, retrying with back-off while the brokers are unreachable.
pub fn topic_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    cfg: &KafkaConfig,
) -> Result<Vec<i32>> {
    let mut backoff =
        Duration::from_millis(parse_duration(&cfg.connect_backoff).map_err(Error::Config)? as u64);
    let attempts = cfg.connect_attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match consumer.fetch_metadata(Some(&cfg.topic), Duration::from_secs(5)) {
            Ok(md) => {
                let Some(t) = md.topics().iter().find(|t| t.name() == cfg.topic) else {
                    return Err(Error::Config(format!(
                        "Kafka topic `{}` does not exist on {}",
                        cfg.topic, cfg.brokers
                    )));
                };
                if let Some(err) = t.error() {
                    let err = rdkafka::types::RDKafkaErrorCode::from(err);
                    if err == rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                        return Err(Error::Config(format!(
                            "Kafka topic `{}` does not exist on {}",
                            cfg.topic, cfg.brokers
                        )));
                    }
                    last = format!("metadata for topic `{}`: {err}", cfg.topic);
                } else if t.partitions().is_empty() {
                    return Err(Error::Config(format!(
                        "Kafka topic `{}` does not exist on {} (no partitions)",
                        cfg.topic, cfg.brokers
                    )));
                } else {
                    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    ids.sort_unstable();
                    return Ok(ids);
                }
            }
            Err(e) => last = e.to_string(),
        }
        // Serve the client's events: its log lines and errors reach the job's log.
        let _ = consumer.poll(Duration::ZERO);
        if attempt < attempts {
            tracing::warn!(attempt, attempts, brokers = %cfg.brokers, error = %last, "Kafka not reachable yet, retrying");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
    Err(kafka_err(
        format!(
            "brokers {} unreachable after {attempts} attempts: {last}",
            cfg.brokers
        ),
        true,
    ))
}

struct Assigned {
    id: PartitionId,
    next_offset: i64,
    end: Option<i64>,
    last_data: Instant,
    finished: bool,
}

/// One worker's partitions of the topic.
pub struct KafkaSource {
    consumer: Arc<JobConsumer>,
    topic: String,
    parts: Vec<Assigned>,
    slot: std::collections::HashMap<i32, usize>,
    idle_timeout: Duration,
    limits: Validation,
    progress: ProgressBoard,
    last_refresh: Instant,
    until: Until,
    /// Fetch errors reported by librdkafka (it retries them itself).
    pub errors: Arc<AtomicU64>,
}

impl KafkaSource {
    /// Connects and assigns the partitions `p` with `p mod peers == index`.
    /// `offsets` gives checkpointed next offsets; others start per `cfg.start`.
    pub fn open(
        cfg: &KafkaConfig,
        group: &str,
        index: usize,
        peers: usize,
        offsets: &BTreeMap<PartitionId, i64>,
        limits: Validation,
        progress: ProgressBoard,
    ) -> Result<KafkaSource> {
        cfg.check_secrets()?;
        let consumer: JobConsumer = cfg
            .client_config()
            .set_log_level(RDKafkaLogLevel::Info)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            // librdkafka pauses a partition's fetching for this long once its local
            // queue is full (default 1 s); a job that decodes slower than the
            // fetcher fills it constantly, and would idle for most of each second.
            .set("fetch.queue.backoff.ms", "5")
            .set(
                "auto.offset.reset",
                match cfg.start {
                    StartAt::Earliest => "earliest",
                    StartAt::Latest => "latest",
                },
            )
            .create_with_context(LogContext)
            .map_err(|e| Error::Config(format!("Kafka consumer: {e}")))?;
        let consumer = Arc::new(consumer);
        let all = topic_partitions(&consumer, cfg)?;
        let mine: Vec<i32> = all
            .iter()
            .copied()
            .filter(|p| (*p as usize) % peers == index)
            .collect();
        let mut tpl = TopicPartitionList::new();
        for &p in &mine {
            let offset = match offsets.get(&(p as PartitionId)) {
                Some(&o) => Offset::Offset(o),
                None => match cfg.start {
                    StartAt::Earliest => Offset::Beginning,
                    StartAt::Latest => Offset::End,
                },
            };
            tpl.add_partition_offset(&cfg.topic, p, offset)
                .map_err(|e| Error::Internal(format!("assigning partition {p}: {e}")))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_err(format!("assigning partitions: {e}"), true))?;
        let mut parts = Vec::with_capacity(mine.len());
        for &p in &mine {
            let (low, high) = consumer
                .fetch_watermarks(&cfg.topic, p, Duration::from_secs(10))
                .map_err(|e| kafka_err(format!("offsets of partition {p}: {e}"), true))?;
            tracing::debug!(partition = p, low, high, "partition offsets");
            let next_offset = match offsets.get(&(p as PartitionId)) {
                Some(&o) => o,
                None => match cfg.start {
                    StartAt::Earliest => low,
                    StartAt::Latest => high,
                },
            };
            let end = match cfg.until {
                Until::Never | Until::Idle => None,
                Until::End => Some(high),
            };
            if let Ok(mut board) = progress.lock() {
                board.insert(
                    p as PartitionId,
                    PartitionProgress {
                        next_offset,
                        high_watermark: high,
                    },
                );
            }
            parts.push(Assigned {
                id: p as PartitionId,
                next_offset,
                end,
                last_data: Instant::now(),
                finished: false,
            });
        }
        tracing::info!(topic = %cfg.topic, partitions = ?mine, "assigned Kafka partitions");
        Ok(KafkaSource {
            consumer,
            topic: cfg.topic.clone(),
            slot: parts
                .iter()
                .enumerate()
                .map(|(k, p)| (p.id as i32, k))
                .collect(),
            parts,
            idle_timeout: Duration::from_millis(
                parse_duration(&cfg.idle_timeout).map_err(Error::Config)? as u64,
            ),
            limits,
            progress,
            last_refresh: Instant::now(),
            until: cfg.until,
            errors: Arc::new(AtomicU64::new(0)),
        })
    }

    fn high_watermark(&self, partition: PartitionId) -> i64 {
        self.progress
            .lock()
            .ok()
            .and_then(|b| b.get(&partition).map(|p| p.high_watermark))
            .unwrap_or(i64::MAX)
    }

    fn refresh_progress(&mut self) {
        if self.last_refresh.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last_refresh = Instant::now();
        for part in &self.parts {
            let high = self
                .consumer
                .fetch_watermarks(&self.topic, part.id as i32, Duration::from_millis(500))
                .map(|(_, h)| h);
            if let Ok(mut board) = self.progress.lock() {
                let entry = board.entry(part.id).or_default();
                entry.next_offset = part.next_offset;
                if let Ok(h) = high {
                    entry.high_watermark = h;
                }
            }
        }
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> Vec<PartitionId> {
        self.parts.iter().map(|p| p.id).collect()
    }

    fn positions(&self) -> BTreeMap<PartitionId, i64> {
        self.parts.iter().map(|p| (p.id, p.next_offset)).collect()
    }

    fn is_idle(&self, partition: PartitionId) -> bool {
        // Idle means nothing to read: silent, and caught up with the end offset
        // the broker last reported. A partition with a backlog is slow, not idle.
        self.parts.iter().any(|p| {
            p.id == partition
                && !p.finished
                && p.last_data.elapsed() >= self.idle_timeout
                && p.next_offset >= self.high_watermark(p.id)
        })
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
        self.refresh_progress();
        self.limits.now_ms = crate::time::now_ms();
        // Report finished partitions first, one per call.
        let idle_timeout = self.idle_timeout;
        for part in self.parts.iter_mut().filter(|p| !p.finished) {
            let done = match (self.until, part.end) {
                (_, Some(end)) => part.next_offset >= end,
                (Until::Idle, None) => {
                    let high = self
                        .progress
                        .lock()
                        .ok()
                        .and_then(|b| b.get(&part.id).map(|p| p.high_watermark))
                        .unwrap_or(i64::MAX);
                    part.last_data.elapsed() >= idle_timeout && part.next_offset >= high
                }
                _ => false,
            };
            if done {
                part.finished = true;
                return Ok(Poll::Finished(part.id));
            }
        }
        // One queue for all partitions: librdkafka hands out each fetch
        // response's records in offset order, so every partition's records
        // stay in order within the batch.
        let mut waited = false;
        while (batch.read as usize) < max {
            // Wait a little once when the queue is empty: librdkafka wakes us
            // the moment a fetch lands, which beats sleeping and re-polling.
            let wait = if batch.read == 0 && !waited {
                Duration::from_millis(2)
            } else {
                Duration::ZERO
            };
            waited = true;
            match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "Kafka consumer error (librdkafka retries)");
                    break;
                }
                Some(Ok(m)) => {
                    let Some(&k) = self.slot.get(&m.partition()) else {
                        continue;
                    };
                    let part = &mut self.parts[k];
                    let offset = m.offset();
                    if part.finished
                        || offset < part.next_offset
                        || part.end.is_some_and(|e| offset >= e)
                    {
                        continue; // past the end, or a re-delivery after a reconnect
                    }
                    batch.partition = part.id;
                    batch.push_raw(m.payload().unwrap_or(&[]), offset as u64, &self.limits);
                    part.next_offset = offset + 1;
                    part.last_data = Instant::now();
                }
            }
        }
        Ok(if batch.read > 0 {
            Poll::Data
        } else {
            Poll::Idle
        })
    }
}

/// Dead letters as records of a Kafka topic: payload is the raw record,
/// headers carry the reason, detail, and the source partition and offset.
pub struct KafkaDeadLetters {
    producer: BaseProducer<CountingContext>,
    topic: String,
}

/// Counts delivery failures of a producer.
#[derive(Clone, Default)]
pub struct CountingContext {
    /// Deliveries that failed for good.
    pub failed: Arc<AtomicU64>,
    /// Deliveries acknowledged.
    pub delivered: Arc<AtomicU64>,
    /// The last delivery error, for messages.
    pub last_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::error!(error = %e, "Kafka delivery failed");
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.to_string());
                }
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn producer(cfg: &KafkaConfig, ctx: CountingContext) -> Result<BaseProducer<CountingContext>> {
    cfg.check_secrets()?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000");
    // The job's properties win over these defaults.
    cfg.apply_properties(&mut c);
    c.create_with_context(ctx)
        .map_err(|e| Error::Config(format!("Kafka producer: {e}")))
}

fn send_retrying(
    producer: &BaseProducer<CountingContext>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(kafka_err(format!("producing: {e}"), false)),
        }
    }
}

impl KafkaDeadLetters {
    /// A producer for `cfg.dead_letter_topic`.
    pub fn open(cfg: &KafkaConfig) -> Result<KafkaDeadLetters> {
        Ok(KafkaDeadLetters {
            producer: producer(cfg, CountingContext::default())?,
            topic: cfg.dead_letter_topic.clone(),
        })
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    fn write(&mut self, letter: &DeadLetter, raw: &[u8]) -> Result<()> {
        let partition = letter.partition.to_string();
        let position = letter.position.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: "detail",
                value: Some(letter.detail.as_str()),
            })
            .insert(Header {
                key: "source",
                value: Some(letter.source.as_str()),
            })
            .insert(Header {
                key: "source-partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source-offset",
                value: Some(position.as_str()),
            });
        let record = BaseRecord::to(&self.topic).payload(raw).headers(headers);
        send_retrying(&self.producer, record)?;
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|e| kafka_err(format!("flushing dead letters: {e}"), true))?;
        self.poll()
    }

    fn poll(&mut self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            let why = self
                .producer
                .context()
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default();
            return Err(kafka_err(
                format!(
                    "{failed} dead letters could not be delivered to `{}`: {why}",
                    self.topic
                ),
                true,
            ));
        }
        Ok(())
    }
}

/// Progress of [`produce`], reported about once a second.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProduceProgress {
    /// Records handed to the producer.
    pub sent: u64,
    /// Records acknowledged by the broker.
    pub delivered: u64,
    /// Records that failed.
    pub failed: u64,
    /// Seconds since the start.
    pub elapsed: f64,
}

/// Produces `(key, payload)` records to `topic` at up to `rate` records/s
/// (0: unpaced) until the iterator ends or `stop` is set, then flushes.
pub fn produce<I>(
    cfg: &KafkaConfig,
    topic: &str,
    records: I,
    rate: f64,
    stop: &AtomicBool,
    mut progress: impl FnMut(&ProduceProgress),
) -> Result<ProduceProgress>
where
    I: Iterator<Item = (Vec<u8>, Vec<u8>)>,
{
    let ctx = CountingContext::default();
    let producer = producer(cfg, ctx.clone())?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut sent = 0u64;
    let snapshot = |sent: u64| ProduceProgress {
        sent,
        delivered: ctx.delivered.load(Ordering::Relaxed),
        failed: ctx.failed.load(Ordering::Relaxed),
        elapsed: started.elapsed().as_secs_f64(),
    };
    for (key, payload) in records {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                producer.poll(wait.min(Duration::from_millis(50)));
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        send_retrying(
            &producer,
            BaseRecord::to(topic).key(&key[..]).payload(&payload[..]),
        )?;
        sent += 1;
        if sent.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            producer.poll(Duration::ZERO);
            progress(&snapshot(sent));
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| kafka_err(format!("flushing: {e}"), true))?;
    let done = snapshot(sent);
    progress(&done);
    Ok(done)
}

/// Reads every partition of `cfg.topic` from the beginning with a bare
/// consumer (no decoding) until no record arrives for `idle`; returns
/// records, payload bytes and seconds from the first record to the last.
/// This is the raw rate the job is measured against.
pub fn consume_all(cfg: &KafkaConfig, idle: Duration) -> Result<(u64, u64, f64)> {
    let consumer: BaseConsumer = cfg
        .client_config()
        .set("group.id", "popularity-consume")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Error::Config(format!("Kafka consumer: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    for p in topic_partitions(&consumer, cfg)? {
        tpl.add_partition_offset(&cfg.topic, p, Offset::Beginning)
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka_err(format!("assigning partitions: {e}"), true))?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                records += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "Kafka consumer error"),
            None => {
                if last.elapsed() >= idle && (first.is_some() || last.elapsed() >= idle * 10) {
                    break;
                }
            }
        }
    }
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    Ok((records, bytes, secs))
}
