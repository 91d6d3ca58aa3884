//! Dead letters as records of a Kafka topic.
//!
//! The payload is the rejected record as it came, truncated if it does not
//! fit the topic; headers carry the reason, a bounded detail, the source
//! partition and offset, and the record's original size. A letter the
//! topic does not acknowledge within `dead-letter-timeout` (the topic is
//! missing, refuses it, or the brokers are down) is appended to a local
//! spool file and counted: the dead-letter topic never stops the job, and
//! no letter disappears without a trace.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::Serialize;

use super::client::{bridge_log, count_error, kafka_err, producer, send_retrying};
use super::KafkaConfig;
use crate::core::error::{Error, Result};
use crate::sink::deadletter::{DeadLetter, DeadLetterSink};

/// Dead letters that reached neither the topic nor only the spool:
/// `popularity_dead_letters_undeliverable_total`.
static UNDELIVERABLE: AtomicU64 = AtomicU64::new(0);
/// Dead letters whose payload was cut to fit the topic.
static TRUNCATED: AtomicU64 = AtomicU64::new(0);

/// Dead letters the topic did not take (each is in the spool file).
pub fn undeliverable() -> u64 {
    UNDELIVERABLE.load(Ordering::Relaxed)
}

/// Dead letters sent with a truncated payload.
pub fn truncated() -> u64 {
    TRUNCATED.load(Ordering::Relaxed)
}

/// The longest `detail` header, in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;
/// What a record and its header framing may add to payload and header bytes.
const FRAMING_BYTES: usize = 512;

/// One line of the spool file: a letter the topic did not take, and why.
#[derive(Serialize)]
struct Undelivered<'a> {
    topic: &'a str,
    error: String,
    reason: Cow<'a, str>,
    detail: Cow<'a, str>,
    source: Cow<'a, str>,
    partition: Cow<'a, str>,
    position: Cow<'a, str>,
    original_size: Cow<'a, str>,
    raw: Cow<'a, str>,
}

/// The local file undeliverable letters are appended to.
struct Spool {
    path: PathBuf,
    out: Mutex<Option<BufWriter<File>>>,
    /// The first write error: reported by the next poll or flush.
    failed: Mutex<Option<String>>,
}

impl Spool {
    fn append(&self, letter: &Undelivered<'_>) {
        UNDELIVERABLE.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            topic = letter.topic,
            error = %letter.error,
            partition = %letter.partition,
            offset = %letter.position,
            spool = %self.path.display(),
            "dead letter not accepted by its topic; written to the spool file"
        );
        let written = self
            .out
            .lock()
            .map_err(|e| e.to_string())
            .and_then(|mut out| {
                let out = match out.as_mut() {
                    Some(o) => o,
                    None => out.insert(BufWriter::new(open_append(&self.path)?)),
                };
                serde_json::to_writer(&mut *out, letter).map_err(|e| e.to_string())?;
                out.write_all(b"\n").map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            if let Ok(mut f) = self.failed.lock() {
                f.get_or_insert(e);
            }
        }
    }

    /// Makes the spool durable, reporting any write that failed.
    fn sync(&self) -> Result<()> {
        let failed = self.failed.lock().ok().and_then(|f| f.clone());
        if let Some(e) = failed {
            return Err(spool_err(&self.path, e));
        }
        if let Ok(mut out) = self.out.lock() {
            if let Some(o) = out.as_mut() {
                o.flush()
                    .map_err(|e| spool_err(&self.path, e.to_string()))?;
                o.get_ref()
                    .sync_data()
                    .map_err(|e| spool_err(&self.path, e.to_string()))?;
            }
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> std::result::Result<File, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())
}

fn spool_err(path: &Path, e: String) -> Error {
    Error::io(
        format!("writing undeliverable dead letters to {}", path.display()),
        std::io::Error::other(e),
    )
}

/// The dead-letter producer's context: failed deliveries go to the spool.
#[derive(Clone)]
pub struct SpoolingContext {
    spool: Arc<Spool>,
    topic: String,
}

impl ClientContext for SpoolingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        bridge_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        count_error(&error, reason);
    }
}

impl ProducerContext for SpoolingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            let header = |key: &str| -> Cow<'_, str> {
                message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == key))
                    .and_then(|h| h.value)
                    .map_or(Cow::Borrowed(""), String::from_utf8_lossy)
            };
            self.spool.append(&Undelivered {
                topic: &self.topic,
                error: error.to_string(),
                reason: header("reason"),
                detail: header("detail"),
                source: header("source"),
                partition: header("source-partition"),
                position: header("source-offset"),
                original_size: header("original-size"),
                raw: String::from_utf8_lossy(message.payload().unwrap_or(&[])),
            });
        }
    }
}

/// Dead letters to `source.kafka.dead-letter-topic`, spooled when it does not take them.
pub struct KafkaDeadLetters {
    producer: BaseProducer<SpoolingContext>,
    topic: String,
    max_bytes: usize,
    flush_timeout: Duration,
}

impl KafkaDeadLetters {
    /// A producer for `cfg.dead_letter_topic`; undeliverable letters go to
    /// `<spool_dir>/undeliverable-worker-<index>.jsonl`.
    pub fn open(cfg: &KafkaConfig, spool_dir: &Path, index: usize) -> Result<KafkaDeadLetters> {
        let spool = Arc::new(Spool {
            path: spool_dir.join(format!("undeliverable-worker-{index:05}.jsonl")),
            out: Mutex::new(None),
            failed: Mutex::new(None),
        });
        let ctx = SpoolingContext {
            spool,
            topic: cfg.dead_letter_topic.clone(),
        };
        let timeout = cfg.dead_letter_timeout;
        // The client's own size check must not refuse what fits the budget.
        let client_max = (cfg.dead_letter_max_bytes + FRAMING_BYTES).max(1_000_000);
        let mut cfg = cfg.clone();
        cfg.properties
            .entry("message.max.bytes".into())
            .or_insert_with(|| client_max.to_string());
        Ok(KafkaDeadLetters {
            producer: producer(&cfg, ctx, timeout)?,
            topic: cfg.dead_letter_topic.clone(),
            max_bytes: cfg.dead_letter_max_bytes,
            // Past the message timeout every letter is acknowledged or spooled.
            flush_timeout: timeout + Duration::from_secs(5),
        })
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying so.
fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes in all)", &s[..end], s.len()))
}

/// The letter's headers and how much of `raw` fits beside them in `max_bytes`.
fn framed(letter: &DeadLetter, raw: &[u8], max_bytes: usize) -> (OwnedHeaders, usize) {
    let detail = bounded(&letter.detail, MAX_DETAIL_BYTES);
    let fields = [
        ("reason", bounded(&letter.reason, 64)),
        ("detail", detail),
        ("source", bounded(&letter.source, 256)),
        ("source-partition", Cow::Owned(letter.partition.to_string())),
        ("source-offset", Cow::Owned(letter.position.to_string())),
        ("original-size", Cow::Owned(raw.len().to_string())),
    ];
    let header_bytes: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
    let room = max_bytes.saturating_sub(FRAMING_BYTES + header_bytes + "truncated".len() + 5);
    let keep = raw.len().min(room);
    let mut headers = OwnedHeaders::new_with_capacity(fields.len() + 1);
    for (key, value) in &fields {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_ref()),
        });
    }
    let cut = if keep < raw.len() { "true" } else { "false" };
    headers = headers.insert(Header {
        key: "truncated",
        value: Some(cut),
    });
    (headers, keep)
}

impl DeadLetterSink for KafkaDeadLetters {
    fn write(&mut self, letter: &DeadLetter, raw: &[u8]) -> Result<()> {
        let (headers, keep) = framed(letter, raw, self.max_bytes);
        if keep < raw.len() {
            TRUNCATED.fetch_add(1, Ordering::Relaxed);
        }
        let record = BaseRecord::to(&self.topic)
            .payload(&raw[..keep])
            .headers(headers);
        if let Err(error) = send_retrying(&self.producer, record) {
            // Refused before it left (too large for the client, unknown topic):
            // the same fate as a failed delivery.
            self.producer.context().spool.append(&Undelivered {
                topic: &self.topic,
                error: error.to_string(),
                reason: Cow::Borrowed(&letter.reason),
                detail: bounded(&letter.detail, MAX_DETAIL_BYTES),
                source: Cow::Borrowed(&letter.source),
                partition: Cow::Owned(letter.partition.to_string()),
                position: Cow::Owned(letter.position.to_string()),
                original_size: Cow::Owned(raw.len().to_string()),
                raw: String::from_utf8_lossy(&raw[..keep]),
            });
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.flush(self.flush_timeout).map_err(|e| {
            kafka_err(
                format!(
                    "dead letters to `{}` neither acknowledged nor spooled in {:?}: {e}",
                    self.topic, self.flush_timeout
                ),
                true,
            )
        })?;
        self.producer.context().spool.sync()
    }

    fn poll(&mut self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        self.producer.context().spool.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(detail: &str) -> DeadLetter {
        DeadLetter {
            reason: "unknown_value".into(),
            detail: detail.into(),
            source: "kafka:events".into(),
            partition: 3,
            position: 41,
            raw: String::new(),
        }
    }

    #[test]
    fn a_letter_too_large_keeps_its_headers_and_a_cut_payload() {
        let raw = vec![b'x'; 600_000];
        let detail = "é".repeat(300_000);
        let (headers, keep) = framed(&letter(&detail), &raw, 100_000);
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or(&[])).into_owned(),
                )
            })
            .collect();
        let get = |k: &str| {
            h.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert!(
            keep < 100_000 && keep > 90_000,
            "payload cut to the room left: {keep}"
        );
        let total: usize = keep + h.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        assert!(total + FRAMING_BYTES <= 100_000, "letter fits: {total}");
        assert!(get("detail").len() <= MAX_DETAIL_BYTES, "detail bounded");
        assert!(
            get("detail").ends_with("(600000 bytes in all)"),
            "{}",
            &get("detail")[1000..]
        );
        assert_eq!(get("original-size"), "600000");
        assert_eq!(get("truncated"), "true");
        assert_eq!(
            (
                get("source-partition").as_str(),
                get("source-offset").as_str()
            ),
            ("3", "41")
        );
    }

    #[test]
    fn a_letter_that_fits_is_whole() {
        let raw = b"{\"event_id\":1}".to_vec();
        let (headers, keep) = framed(&letter("bad"), &raw, 1_000_000);
        assert_eq!(keep, raw.len());
        let cut = headers
            .iter()
            .find(|h| h.key == "truncated")
            .and_then(|h| h.value);
        assert_eq!(cut, Some(&b"false"[..]));
    }
}
