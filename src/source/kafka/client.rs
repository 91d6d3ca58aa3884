//! What every client of the job shares: log bridge, error counter, producer, metadata.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::KafkaConfig;
use crate::core::backoff::Backoff;
use crate::core::error::{Error, Result};

/// Errors librdkafka reported for this process's clients (it retries most
/// of them itself): `popularity_kafka_client_errors_total`.
static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Errors librdkafka has reported so far in this process.
pub fn client_errors() -> u64 {
    CLIENT_ERRORS.load(Ordering::Relaxed)
}

/// librdkafka's log line, in the job's log (target `librdkafka`).
pub fn bridge_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
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

/// What librdkafka says (as a transport failure) when TLS or SASL refuses a connection.
const REFUSALS: [&str; 3] = [
    "SSL handshake failed",
    "certificate verify failed",
    "SASL authentication error",
];

/// Counts and logs an error librdkafka reported; returns it as a
/// configuration problem if it is one (TLS or SASL refused: a wrong CA,
/// certificate or password is not cured by retrying).
pub fn count_error(error: &KafkaError, reason: &str) -> Option<String> {
    CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(target: "librdkafka", error = %error, "{reason}");
    let refused = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
        )
    ) || REFUSALS.iter().any(|r| reason.contains(r));
    refused.then(|| format!("{error}: {reason}"))
}

/// The consumers' context: librdkafka's own log lines go to the job's log,
/// and its errors are logged and counted; the last TLS or SASL refusal is
/// kept, so a connection that never succeeds is reported as the
/// configuration error it is. Both are delivered while the consumer is polled.
#[derive(Clone, Debug, Default)]
pub struct LogContext {
    refused: Arc<Mutex<Option<String>>>,
}

impl LogContext {
    /// The last TLS or SASL refusal, if any.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }
}

impl LogContext {
    fn refuse(&self, refusal: String) {
        if let Ok(mut r) = self.refused.lock() {
            *r = Some(refusal);
        }
    }
}

impl ClientContext for LogContext {
    // A consumer's connection errors reach it as poll results with only a
    // code; the words of a TLS or SASL refusal come through its log.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        bridge_log(level, fac, message);
        if REFUSALS.iter().any(|r| message.contains(r)) {
            self.refuse(message.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(refusal) = count_error(&error, reason) {
            self.refuse(refusal);
        }
    }
}

impl ConsumerContext for LogContext {}

/// The job's consumers.
pub type JobConsumer = BaseConsumer<LogContext>;

/// An error of the Kafka cluster or the connection to it.
pub fn kafka_err(message: String, retryable: bool) -> Error {
    Error::External {
        system: "kafka",
        message,
        retryable,
    }
}

/// Lists the topic's partitions, retrying with back-off while the brokers
/// are unreachable; a TLS or SASL refusal ends it as a configuration error.
pub fn topic_partitions(consumer: &JobConsumer, cfg: &KafkaConfig) -> Result<Vec<i32>> {
    let mut backoff = Backoff::new(cfg.connect_backoff, Duration::from_secs(10));
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
            Err(e) => {
                // The client's own error, counted like those it reports by
                // event (which may come only after the last attempt).
                if let Some(refusal) = count_error(&e, "Kafka metadata request failed") {
                    consumer.context().refuse(refusal);
                }
                last = e.to_string();
            }
        }
        // Serve the client's events: its log lines and errors reach the job's log.
        while let Some(event) = consumer.poll(Duration::ZERO) {
            if let Err(e) = event {
                if let Some(refusal) = count_error(&e, "Kafka consumer error") {
                    consumer.context().refuse(refusal);
                }
            }
        }
        if let Some(refusal) = consumer.context().refused() {
            return Err(Error::Config(format!(
                "Kafka brokers {} refused the connection's TLS or SASL settings (check ssl.ca.location, the client certificate, sasl.mechanism, sasl.username and the password): {refusal}",
                cfg.brokers
            )));
        }
        if attempt < attempts {
            tracing::warn!(attempt, attempts, brokers = %cfg.brokers, error = %last, "Kafka not reachable yet, retrying");
            std::thread::sleep(backoff.next_wait());
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

impl ClientContext for CountingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        bridge_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        count_error(&error, reason);
    }
}

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

/// A producer with the job's properties over idempotent defaults; `timeout`
/// bounds how long a record may wait for its acknowledgement.
pub fn producer<C: ProducerContext>(
    cfg: &KafkaConfig,
    ctx: C,
    timeout: Duration,
) -> Result<BaseProducer<C>> {
    cfg.check_secrets()?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .set_log_level(RDKafkaLogLevel::Info);
    // The job's properties win over these defaults.
    apply_properties(cfg, &mut c);
    c.create_with_context(ctx)
        .map_err(|e| Error::Config(format!("Kafka producer: {e}")))
}

/// Sends a record, waiting while the producer's queue is full.
pub fn send_retrying<C: ProducerContext>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> std::result::Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A client configuration with the brokers and the job's properties.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    apply_properties(cfg, &mut c);
    c
}

/// The job's properties, then its secret ones from the environment.
fn apply_properties(cfg: &KafkaConfig, c: &mut ClientConfig) {
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    for (k, var) in &cfg.secret_properties {
        if let Ok(v) = std::env::var(var) {
            c.set(k, v);
        }
    }
}
