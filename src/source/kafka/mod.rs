//! Kafka as the source of watch events, and the producer `generate` uses.
//!
//! Partitions are assigned explicitly: partition `p` of the topic is read by
//! global worker `p mod workers`, so every partition has exactly one reader
//! across all processes and there is no consumer-group rebalancing to
//! reason about. Records of all partitions come through one queue, each
//! tagged with its partition; watermarks (and checkpoints) are kept per
//! partition. Payloads are decoded straight from librdkafka's buffers: no
//! per-message allocation.
//!
//! The topic's partition list is fetched again every `metadata-refresh`,
//! and partitions added since are read from their start. A partition whose
//! next offset is no longer in its log (the topic was recreated, retention
//! passed it) follows `on-lost-offsets`; nothing is skipped without a
//! warning and a count.

mod client;
mod dead_letters;
mod partition;
mod probe;
mod produce;
mod ranges;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

pub use crate::config::kafka::{KafkaConfig, OnLostOffsets, StartAt, Until, MIN_DEAD_LETTER_BYTES};
pub use client::{
    client_config, client_errors, kafka_err, topic_partitions, CountingContext, JobConsumer,
    LogContext,
};
pub use dead_letters::{truncated, undeliverable, KafkaDeadLetters, MAX_DETAIL_BYTES};
pub use produce::{consume_all, produce, ProduceProgress};

use super::{Batch, PartitionId, Poll, Source};
use crate::core::error::{Error, Result};
use crate::core::event::Validation;
use crate::core::freshness::SAMPLE_EVERY;
pub use partition::relocate;
use partition::{short_of_end, stale_end_limit, Assigned};
use probe::Held;
use ranges::Ranges;

/// How long a running partition's end may look short of its next offset
/// while the broker confirms nothing, before the offsets count as lost: a
/// restarted test broker reported short ends and handed out nothing for
/// seconds (8 s of idle timeout was too short in its container test).
const UNCONFIRMED_PATIENCE: Duration = Duration::from_secs(30);

/// Record batches the client could not decode (each stops the job):
/// `popularity_kafka_undecodable_batches_total`.
static UNDECODABLE: AtomicU64 = AtomicU64::new(0);

/// Record batches the client could not decode so far in this process.
pub fn undecodable_batches() -> u64 {
    UNDECODABLE.load(Ordering::Relaxed)
}

/// Progress of one partition, for lag reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionProgress {
    /// Next offset to read.
    pub next_offset: i64,
    /// The partition's high watermark when last asked.
    pub high_watermark: i64,
    /// Offsets skipped because they were no longer in the log
    /// (`popularity_kafka_offsets_lost_total`).
    pub lost: u64,
    /// Offsets the broker passed over between two records it handed out
    /// (`popularity_kafka_offset_gaps_total`): normal for transaction
    /// markers and compacted topics, a loss anywhere else.
    pub gaps: u64,
}

impl PartitionProgress {
    /// Records not yet read.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.next_offset).max(0)
    }
}

/// Per-partition progress of every Kafka source in the process.
pub type ProgressBoard = Arc<Mutex<BTreeMap<PartitionId, PartitionProgress>>>;

/// One worker's partitions of the topic.
pub struct KafkaSource {
    consumer: Arc<JobConsumer>,
    /// Looks up single offsets to confirm a loss (made when first needed).
    probe: Option<JobConsumer>,
    /// Partitions whose end looked short of their next offset with nothing
    /// to confirm it either way, since when.
    unconfirmed: HashMap<i32, Instant>,
    group: String,
    cfg: KafkaConfig,
    index: usize,
    peers: usize,
    parts: Vec<Assigned>,
    slot: rustc_hash::FxHashMap<i32, usize>,
    idle_timeout: Duration,
    limits: Validation,
    progress: ProgressBoard,
    /// Each partition's log range, asked for on a thread of its own.
    ranges: Option<Ranges>,
    last_refresh: Instant,
    metadata_every: Duration,
    last_metadata: Instant,
    /// When the client last reported the broker down or the connection to
    /// it broken: silence since then is not quiet ([`Assigned::quiet`]).
    unreachable: Option<Instant>,
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
        let consumer = job_consumer(cfg, group)?;
        let mut source = KafkaSource {
            consumer: Arc::new(consumer),
            probe: None,
            unconfirmed: HashMap::new(),
            group: group.to_string(),
            cfg: cfg.clone(),
            index,
            peers,
            parts: Vec::new(),
            slot: rustc_hash::FxHashMap::default(),
            idle_timeout: cfg.idle_timeout,
            limits,
            progress,
            ranges: None,
            last_refresh: Instant::now(),
            metadata_every: cfg.metadata_refresh,
            last_metadata: Instant::now(),
            unreachable: None,
        };
        let all = topic_partitions(&source.consumer, cfg)?;
        let mine = source.mine(&all);
        for &p in &mine {
            let (low, high) = source.watermarks(p, Duration::from_secs(10))?;
            tracing::debug!(partition = p, low, high, "partition offsets");
            let next_offset = match offsets.get(&(p as PartitionId)) {
                Some(&o) => source.settle(p, o, low, high, false)?,
                None => match cfg.start {
                    StartAt::Earliest => low,
                    StartAt::Latest => high,
                },
            };
            let end = match cfg.until {
                Until::Never | Until::Idle => None,
                Until::End => Some(high),
            };
            source.track(p, next_offset, end, high);
        }
        source.assign()?;
        let at: Vec<(i32, i64)> = (source.parts.iter())
            .map(|p| (p.id as i32, p.next_offset))
            .collect();
        let name = format!("kafka-offsets-{index}");
        source.ranges = Some(Ranges::spawn(
            source.consumer.clone(),
            cfg.topic.clone(),
            &at,
            name,
        )?);
        tracing::info!(topic = %cfg.topic, partitions = ?mine, "assigned Kafka partitions");
        Ok(source)
    }

    /// This worker's share of `all`.
    fn mine(&self, all: &[i32]) -> Vec<i32> {
        all.iter()
            .copied()
            .filter(|p| (*p as usize) % self.peers == self.index)
            .collect()
    }

    fn watermarks(&self, p: i32, timeout: Duration) -> Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(&self.cfg.topic, p, timeout)
            .map_err(|e| kafka_err(format!("offsets of partition {p}: {e}"), true))
    }

    /// The offset partition `p` goes on from when it wants `wanted` and its
    /// log is `[low, high]`: `wanted` if it is there, else per `on-lost-offsets`.
    fn settle(&mut self, p: i32, wanted: i64, low: i64, high: i64, running: bool) -> Result<i64> {
        let policy = self.cfg.on_lost_offsets;
        let Some((next, skipped)) = relocate(wanted, low, high, policy) else {
            self.unconfirmed.remove(&p);
            return Ok(wanted);
        };
        // Some brokers report an end offset short of the log's real end: past
        // the end only counts as lost if the record before `wanted` is gone too.
        // A running partition gives a broker that answers nothing (one just
        // restarted) a while before that silence counts as a loss.
        if wanted > high && wanted > 0 {
            match self.holds(p, wanted - 1)? {
                Held::Yes => {
                    self.unconfirmed.remove(&p);
                    return Ok(wanted);
                }
                Held::Unknown if running && self.patient(p, wanted, high) => return Ok(wanted),
                Held::Unknown | Held::Gone => {}
            }
        }
        self.unconfirmed.remove(&p);
        let topic = &self.cfg.topic;
        if policy == OnLostOffsets::Fail {
            return Err(kafka_err(
                format!(
                    "topic `{topic}` partition {p}: the next offset to read, {wanted}, is not in the partition's log (offsets {low} to {high}); the topic was recreated or retention passed it. Set source.kafka.on-lost-offsets = \"earliest\" or \"latest\" to go on and count what is skipped"
                ),
                false,
            ));
        }
        tracing::warn!(topic = %topic, partition = p, wanted, low, high, next, skipped, ?policy, "offset not in the partition's log; going on per source.kafka.on-lost-offsets");
        if let Ok(mut board) = self.progress.lock() {
            board.entry(p as PartitionId).or_default().lost += skipped;
        }
        Ok(next)
    }

    /// Whether partition `p`'s log still reaches `offset` (see [`probe`]).
    fn holds(&mut self, p: i32, offset: i64) -> Result<Held> {
        let probe = match self.probe.take() {
            Some(c) => c,
            None => job_consumer(&self.cfg, &self.group)?,
        };
        let held = probe::holds(&probe, &self.cfg.topic, p, offset);
        self.probe = Some(probe);
        held
    }

    /// Whether partition `p` is still within [`UNCONFIRMED_PATIENCE`] of
    /// its end first looking short with nothing confirmed.
    fn patient(&mut self, p: i32, wanted: i64, high: i64) -> bool {
        let since = *self.unconfirmed.entry(p).or_insert_with(Instant::now);
        let waited = since.elapsed();
        if waited < UNCONFIRMED_PATIENCE {
            tracing::warn!(topic = %self.cfg.topic, partition = p, wanted, high, waited_s = waited.as_secs(), "the broker reports an end offset short of the next offset to read and hands out nothing to confirm it; asking again");
        }
        waited < UNCONFIRMED_PATIENCE
    }

    fn track(&mut self, p: i32, next_offset: i64, end: Option<i64>, high: i64) {
        if let Ok(mut board) = self.progress.lock() {
            let entry = board.entry(p as PartitionId).or_default();
            entry.next_offset = next_offset;
            entry.high_watermark = high;
        }
        self.slot.insert(p, self.parts.len());
        self.parts.push(Assigned {
            id: p as PartitionId,
            next_offset,
            end,
            last_data: Instant::now(),
            finished: false,
            reported_end: high,
        });
    }

    /// Assigns every tracked partition at its next offset (records the
    /// client already fetched from before are dropped by it).
    fn assign(&self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for part in &self.parts {
            tpl.add_partition_offset(
                &self.cfg.topic,
                part.id as i32,
                Offset::Offset(part.next_offset),
            )
            .map_err(|e| Error::Internal(format!("assigning partition {}: {e}", part.id)))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka_err(format!("assigning partitions: {e}"), true))
    }

    fn high_watermark(&self, partition: PartitionId) -> i64 {
        self.progress
            .lock()
            .ok()
            .and_then(|b| b.get(&partition).map(|p| p.high_watermark))
            .unwrap_or(i64::MAX)
    }

    /// Every 2 s: each partition's log range, for lag and to catch offsets
    /// the log no longer holds; every `metadata-refresh`: new partitions.
    fn refresh(&mut self) -> Result<()> {
        let answers = self.ranges.as_ref().map(Ranges::take).unwrap_or_default();
        if answers.is_empty() && self.last_refresh.elapsed() < Duration::from_secs(2) {
            return Ok(());
        }
        self.last_refresh = Instant::now();
        let mut moved = false;
        for k in 0..self.parts.len() {
            let (id, next) = (self.parts[k].id, self.parts[k].next_offset);
            let answer = answers.get(&(id as i32)).copied();
            let (mut relocated, before) = (false, self.parts[k].reported_end);
            if let Some((low, high, then)) = answer {
                // Read past `high` while the question was out: not lost.
                if (low..=high).contains(&then) {
                    self.unconfirmed.remove(&(id as i32));
                } else {
                    let settled = self.settle(id as i32, next, low, high, true)?;
                    if settled != next {
                        self.parts[k].next_offset = settled;
                        (moved, relocated) = (true, true);
                        if let Some(r) = &self.ranges {
                            r.note(id as i32, settled);
                        }
                    }
                }
                self.parts[k].reported_end = high;
            }
            if let Ok(mut board) = self.progress.lock() {
                let entry = board.entry(id).or_default();
                entry.next_offset = self.parts[k].next_offset;
                if let Some((_, h, _)) = answer {
                    // The highest end reported: a log's end does not move
                    // back, unless the log was replaced (relocated above).
                    let highest = if relocated {
                        h
                    } else {
                        entry.high_watermark.max(h)
                    };
                    if h < highest && h != before {
                        let (topic, next) = (&self.cfg.topic, self.parts[k].next_offset);
                        tracing::warn!(topic = %topic, partition = id, reported = h, earlier = highest, next, "the broker reports an end offset below one it reported before; waiting for the rest");
                    }
                    entry.high_watermark = highest;
                }
            }
        }
        if self.discover() || moved {
            self.assign()?;
        }
        Ok(())
    }

    /// Tracks partitions added to the topic since the last look; true if any.
    fn discover(&mut self) -> bool {
        if self.cfg.until == Until::End || self.last_metadata.elapsed() < self.metadata_every {
            return false;
        }
        self.last_metadata = Instant::now();
        let md = match self
            .consumer
            .fetch_metadata(Some(&self.cfg.topic), Duration::from_secs(5))
        {
            Ok(md) => md,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka metadata refresh failed; trying again later");
                return false;
            }
        };
        let all: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == self.cfg.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let new: Vec<i32> = self
            .mine(&all)
            .into_iter()
            .filter(|p| !self.slot.contains_key(p))
            .collect();
        for &p in &new {
            let Ok((low, high)) = self.watermarks(p, Duration::from_secs(5)) else {
                continue; // not ready yet; the next refresh finds it again
            };
            tracing::info!(topic = %self.cfg.topic, partition = p, from = low, "new Kafka partition: reading it from its start");
            self.track(p, low, None, high);
            if let Some(r) = &self.ranges {
                r.watch(p, low);
            }
        }
        !new.is_empty()
    }

    /// A consumer error: a batch the client cannot decode stops the job
    /// (skipping it would lose its records silently); an offset outside the
    /// log is looked at now; others the client retries.
    fn consumer_error(&mut self, e: &KafkaError) -> Result<()> {
        client::count_error(e, "Kafka consumer error");
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::BadCompression
                | RDKafkaErrorCode::BadMessage
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::UnsupportedCompressionType,
            ) => {
                UNDECODABLE.fetch_add(1, Ordering::Relaxed);
                Err(kafka_err(
                    format!("topic `{}`: a record batch could not be decoded ({e}); stopping rather than skipping its records", self.cfg.topic),
                    false,
                ))
            }
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                if let Some(r) = &self.ranges {
                    r.ask_now();
                }
                Ok(())
            }
            Some(
                RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::NetworkException,
            ) => {
                // The broker is away: its partitions' silence is not quiet.
                self.unreachable = Some(Instant::now());
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A consumer of the job's group with the job's properties; offsets are
/// never committed, and an offset outside the log is reported, not reset.
fn job_consumer(cfg: &KafkaConfig, group: &str) -> Result<JobConsumer> {
    cfg.check_secrets()?;
    client_config(cfg)
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
        // An offset outside the log is ours to decide (on-lost-offsets),
        // not reset silently by the client.
        .set("auto.offset.reset", "error")
        .create_with_context(LogContext::default())
        .map_err(|e| Error::Config(format!("Kafka consumer: {e}")))
}

/// Counts the offsets from `expected` to `got` that the broker passed over.
fn note_gap(progress: &ProgressBoard, partition: PartitionId, expected: i64, got: i64) {
    tracing::debug!(partition, expected, got, "the broker skipped offsets");
    if let Ok(mut board) = progress.lock() {
        board.entry(partition).or_default().gaps += (got - expected) as u64;
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
                && p.quiet(
                    self.idle_timeout,
                    self.high_watermark(p.id),
                    self.unreachable,
                )
        })
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
        self.refresh()?;
        self.limits.now_ms = crate::core::time::now_ms();
        // Report finished partitions first, one per call.
        let (idle_timeout, unreachable) = (self.idle_timeout, self.unreachable);
        for part in self.parts.iter_mut().filter(|p| !p.finished) {
            let done = match (self.cfg.until, part.end) {
                (_, Some(end)) => part.next_offset >= end,
                (Until::Idle, None) => {
                    let high = self
                        .progress
                        .lock()
                        .ok()
                        .and_then(|b| b.get(&part.id).map(|p| p.high_watermark))
                        .unwrap_or(i64::MAX);
                    if part.short_of_an_earlier_end(high, stale_end_limit(idle_timeout)) {
                        return Err(short_of_end(&self.cfg.topic, part, high));
                    }
                    part.quiet(idle_timeout, high, unreachable)
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
        // One clock read per batch, not per record: idle detection needs seconds, not microseconds.
        let now = Instant::now();
        let mut last: Option<(i32, usize)> = None;
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
                    self.consumer_error(&e)?;
                    break;
                }
                Some(Ok(m)) => {
                    // Records come in runs of one partition (a fetch
                    // response's): the run's slot is looked up once.
                    let p = m.partition();
                    let k = match last {
                        Some((q, k)) if q == p => k,
                        _ => match self.slot.get(&p) {
                            Some(&k) => k,
                            None => continue,
                        },
                    };
                    last = Some((p, k));
                    let part = &mut self.parts[k];
                    let offset = m.offset();
                    if part.finished
                        || offset < part.next_offset
                        || part.end.is_some_and(|e| offset >= e)
                    {
                        continue; // past the end, or a re-delivery after a reconnect
                    }
                    if offset > part.next_offset {
                        note_gap(&self.progress, part.id, part.next_offset, offset);
                    }
                    batch.partition = part.id;
                    let decoded = batch.events.len();
                    batch.push_raw(m.payload().unwrap_or(&[]), offset as u64, &self.limits);
                    if (offset as u64).is_multiple_of(SAMPLE_EVERY) && batch.events.len() > decoded
                    {
                        if let Some(at) = m.timestamp().to_millis() {
                            batch.arrivals.push((decoded, at));
                        }
                    }
                    part.next_offset = offset + 1;
                    part.last_data = now;
                }
            }
        }
        if let (Some(r), true) = (&self.ranges, batch.read > 0) {
            for part in &self.parts {
                r.note(part.id as i32, part.next_offset);
            }
        }
        Ok(if batch.read > 0 {
            Poll::Data
        } else {
            Poll::Idle
        })
    }
}
