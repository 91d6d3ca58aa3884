//! Counters shared by the workers of one process.
//!
//! Plain atomics, so the hot path pays one relaxed add per batch; the
//! metrics endpoint and the CLI summary read them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from sources, valid or not.
    pub read: AtomicU64,
    /// Records that decoded into events.
    pub decoded: AtomicU64,
    /// Records rejected by the decoder.
    pub invalid: AtomicU64,
    /// Valid events older than their partition's watermark.
    pub late: AtomicU64,
    /// Valid events too far ahead of their partition's clock that no other
    /// records corroborated (dead-lettered as `clock_skew`).
    pub clock_skew: AtomicU64,
    /// Each partition's watermark (ms) and the largest clock skew it rejected (ms).
    pub partition_clocks: std::sync::Mutex<std::collections::BTreeMap<u32, (i64, i64)>>,
    /// `started_video` events counted as views.
    pub views: AtomicU64,
    /// Records written to the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// Catalog changes entered at run time (topic, file reload).
    pub catalog_changes: AtomicU64,
    /// Catalog updates refused (and dead-lettered).
    pub catalog_refused: AtomicU64,
    /// Snapshot parts written.
    pub parts_written: AtomicU64,
    /// Snapshot rows written.
    pub rows_written: AtomicU64,
    /// Snapshot bytes written.
    pub bytes_written: AtomicU64,
    /// Hours whose `_SUCCESS` manifest was written.
    pub hours_published: AtomicU64,
    /// Store operations retried after a transient failure.
    pub store_retries: AtomicU64,
    /// `(content, pane)` entries restored from a checkpoint at start.
    pub restored_entries: AtomicU64,
    /// Time spent encoding and storing snapshot parts, in microseconds.
    pub part_write_micros: AtomicU64,
    /// Live window state: pending (content, pane) updates plus current counts.
    pub live_state: AtomicI64,
    /// Titles outside the catalog the model's title shards keep one by one.
    pub model_uncataloged: AtomicI64,
    /// Facts of ids outside the catalog counted under the overflow title,
    /// because their shard kept `model.uncataloged-limit` such titles already.
    pub model_overflowed: AtomicU64,
    /// Largest value `live_state` reached.
    pub live_state_peak: AtomicI64,
    /// Wall clock (ms) when the dataflow had processed every pane the source
    /// fed, on the last worker to get there (before the windows run out).
    pub caught_up_ms: AtomicI64,
    /// Delays from sampled events' arrival to the live board showing them.
    pub freshness: crate::core::freshness::Freshness,
    /// The newest pane of a view this process's drivers have taken: every
    /// stage sums its provisional counts up to it, so that shards published
    /// at about the same time count the same window.
    pub taken_pane: AtomicU64,
    /// Delays from sampled events' arrival to the provisional counts holding
    /// them (keyed by the time the driver took them, not by pane).
    pub early_freshness: crate::core::freshness::Freshness,
    /// Each worker's input watermark (ms), for the lowest-watermark gauge.
    pub worker_watermarks: std::sync::Mutex<std::collections::BTreeMap<usize, i64>>,
    /// Dataflow output frontier (ms of event time).
    pub frontier_ms: AtomicI64,
    /// Checkpoint parts written.
    pub checkpoints: AtomicU64,
    /// Checkpoint parts that failed.
    pub checkpoint_failures: AtomicU64,
    /// Duration of the last checkpoint part write (µs).
    pub checkpoint_micros: AtomicU64,
    /// Size of the last checkpoint part.
    pub checkpoint_bytes: AtomicU64,
    /// Wall-clock time of the last checkpoint part (ms).
    pub checkpoint_last_ms: AtomicI64,
    /// Store calls (snapshots and checkpoints).
    pub store_calls: AtomicU64,
    /// Time spent in store calls (µs).
    pub store_call_micros: AtomicU64,
    /// Store calls that failed.
    pub store_errors: AtomicU64,
    /// Store calls that timed out.
    pub store_timeouts: AtomicU64,
    /// Store jobs (parts, hours) a stopping process gave up unfinished.
    pub store_jobs_abandoned: AtomicU64,
    /// Hours this process holds back because a store write failed for good.
    pub hours_held_back: AtomicU64,
    /// Checkpoints whose manifest this process wrote (the process of worker 0).
    pub checkpoints_completed: AtomicU64,
    /// Wall-clock time of the last completed checkpoint (ms).
    pub checkpoint_completed_ms: AtomicI64,
    /// Failed store calls while completing or pruning checkpoints.
    pub checkpoint_store_errors: AtomicU64,
    /// When each worker last went round its loop, for `/healthz`.
    pub steps: Steps,
}

/// When each worker of the process last stepped (wall clock, ms).
///
/// A worker stores the time once per round of its loop, which it goes
/// round at least every few milliseconds even with no input; a worker
/// that has not stepped for long is stuck (a hung call, a deadlock).
#[derive(Debug, Default)]
pub struct Steps {
    workers: std::sync::RwLock<Vec<(usize, std::sync::Arc<AtomicI64>)>>,
}

/// What a worker stores in its step time when it has finished: never stalled.
const FINISHED: i64 = i64::MAX;

impl Steps {
    /// Registers worker `index`; it stores the wall clock (ms) in the cell
    /// the call returns at every step, and [`Steps::finish`]es it when done.
    pub fn register(&self, index: usize) -> std::sync::Arc<AtomicI64> {
        let cell = std::sync::Arc::new(AtomicI64::new(crate::core::time::now_ms()));
        if let Ok(mut w) = self.workers.write() {
            w.push((index, cell.clone()));
        }
        cell
    }

    /// Workers registered in this process.
    pub fn workers(&self) -> usize {
        self.workers.read().map_or(0, |w| w.len())
    }

    /// Marks a worker's loop as finished: it no longer counts as stalled.
    pub fn finish(cell: &AtomicI64) {
        cell.store(FINISHED, Ordering::Relaxed);
    }

    /// The worker that has gone longest without a step at `now_ms`, and for
    /// how long (ms); `None` before any worker runs or when all have finished.
    pub fn longest_wait(&self, now_ms: i64) -> Option<(usize, i64)> {
        let workers = self.workers.read().ok()?;
        workers
            .iter()
            .map(|(i, c)| (*i, c.load(Ordering::Relaxed)))
            .filter(|(_, at)| *at != FINISHED)
            .map(|(i, at)| (i, (now_ms - at).max(0)))
            .max_by_key(|(_, wait)| *wait)
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// See [`Stats::read`].
    pub read: u64,
    /// See [`Stats::decoded`].
    pub decoded: u64,
    /// See [`Stats::invalid`].
    pub invalid: u64,
    /// See [`Stats::late`].
    pub late: u64,
    /// See [`Stats::clock_skew`].
    pub clock_skew: u64,
    /// See [`Stats::views`].
    pub views: u64,
    /// See [`Stats::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Stats::parts_written`].
    pub parts_written: u64,
    /// See [`Stats::rows_written`].
    pub rows_written: u64,
    /// See [`Stats::hours_published`].
    pub hours_published: u64,
    /// See [`Stats::bytes_written`].
    pub bytes_written: u64,
    /// See [`Stats::store_retries`].
    pub store_retries: u64,
    /// See [`Stats::part_write_micros`].
    pub part_write_micros: u64,
    /// See [`Stats::live_state_peak`].
    pub live_state_peak: i64,
    /// See [`Stats::caught_up_ms`].
    pub caught_up_ms: i64,
}

impl StatsSnapshot {
    /// The one-line summary a run prints at its end, after `secs` seconds.
    pub fn summary(&self, secs: f64) -> String {
        format!(
            "read {} records in {:.2}s ({:.0}/s): {} views, {} invalid, {} late, {} dead-lettered; {} hours published, {} parts, {} rows",
            self.read,
            secs,
            self.read as f64 / secs.max(1e-9),
            self.views,
            self.invalid,
            self.late,
            self.dead_lettered,
            self.hours_published,
            self.parts_written,
            self.rows_written
        )
    }
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Moves the live-state gauge by `delta` and tracks its peak.
    pub fn live_state_delta(&self, delta: i64) {
        if delta != 0 {
            let now = self.live_state.fetch_add(delta, Ordering::Relaxed) + delta;
            self.live_state_peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// The lowest watermark over the workers of this process (ms; 0 before any).
    pub fn low_watermark_ms(&self) -> i64 {
        self.worker_watermarks
            .lock()
            .ok()
            .and_then(|m| m.values().min().copied())
            .unwrap_or(0)
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            read: g(&self.read),
            decoded: g(&self.decoded),
            invalid: g(&self.invalid),
            late: g(&self.late),
            clock_skew: g(&self.clock_skew),
            views: g(&self.views),
            dead_lettered: g(&self.dead_lettered),
            parts_written: g(&self.parts_written),
            rows_written: g(&self.rows_written),
            hours_published: g(&self.hours_published),
            bytes_written: g(&self.bytes_written),
            store_retries: g(&self.store_retries),
            part_write_micros: g(&self.part_write_micros),
            live_state_peak: self.live_state_peak.load(Ordering::Relaxed),
            caught_up_ms: self.caught_up_ms.load(Ordering::Relaxed),
        }
    }
}
