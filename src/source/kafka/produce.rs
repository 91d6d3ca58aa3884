//! Producing generated events into a topic, and the bare consumer the job is measured against.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{
    kafka_err, producer, send_retrying, topic_partitions, CountingContext, LogContext,
};
use super::KafkaConfig;
use crate::core::error::{Error, Result};

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
    let producer = producer(cfg, ctx.clone(), Duration::from_secs(300))?;
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
        )
        .map_err(|e| kafka_err(format!("producing to `{topic}`: {e}"), false))?;
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
    let consumer: BaseConsumer<LogContext> = super::client_config(cfg)
        .set("group.id", "popularity-consume")
        .set("enable.auto.commit", "false")
        .create_with_context(LogContext::default())
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
