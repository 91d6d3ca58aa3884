//! Freshness: how long an event takes from its arrival (its Kafka
//! timestamp) to the live board showing its pane.
//!
//! Samples wait under a key: the pane for the final counts, which show a
//! pane once every worker has published it; the time the driver took the
//! event for the provisional counts, which show it once every worker has
//! published provisional counts made after that.
//!
//! The source samples one record in [`SAMPLE_EVERY`] by offset; the driver
//! notes each sampled event's pane and arrival ([`Freshness::note`]); when
//! every worker of the process has published its live shard as of that pane
//! or later, the sample is visible and its delay goes into a fixed-bucket
//! histogram of atomics ([`Freshness::shown`]), which the metrics endpoint
//! exports as Prometheus buckets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::core::time::{Millis, Pane};

/// One record in this many (by offset) is sampled.
pub const SAMPLE_EVERY: u64 = 256;

/// Samples waiting to be shown at most at once; past it new ones are
/// counted as dropped, not tracked (they are measurements, not views).
pub const MAX_WAITING: usize = 100_000;

/// Sampled arrivals waiting for their pane to be shown, and the delays of
/// those shown.
#[derive(Debug, Default)]
pub struct Freshness {
    waiting: Mutex<Waiting>,
    /// Delays from arrival to shown, ms.
    pub delay: Histogram,
    /// Samples not tracked because [`MAX_WAITING`] were waiting.
    pub dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Waiting {
    by_pane: BTreeMap<Pane, Vec<Millis>>,
    len: usize,
}

impl Freshness {
    /// Notes sampled events: `(key, arrival ms)`, the key a pane (or a time
    /// taken, see the module's doc).
    pub fn note(&self, samples: &[(Pane, Millis)]) {
        if samples.is_empty() {
            return;
        }
        let Ok(mut w) = self.waiting.lock() else {
            return;
        };
        for &(pane, at) in samples {
            if w.len >= MAX_WAITING {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            w.by_pane.entry(pane).or_default().push(at);
            w.len += 1;
        }
    }

    /// Every key (pane) up to `as_of` is shown at `now_ms`: each sample of
    /// those records its delay.
    ///
    /// ```
    /// use popularity::core::freshness::Freshness;
    ///
    /// let f = Freshness::default();
    /// f.note(&[(10, 1_000), (10, 1_500), (11, 2_000)]);
    /// f.shown(10, 3_000);
    /// assert_eq!(f.delay.count(), 2, "pane 11 is not shown yet");
    /// assert_eq!(f.delay.sum_ms(), 2_000 + 1_500);
    /// f.shown(11, 4_000);
    /// assert_eq!(f.delay.count(), 3);
    /// ```
    pub fn shown(&self, as_of: Pane, now_ms: Millis) {
        let Ok(mut w) = self.waiting.lock() else {
            return;
        };
        while let Some(entry) = w.by_pane.first_entry() {
            if *entry.key() > as_of {
                break;
            }
            let arrivals = entry.remove();
            w.len -= arrivals.len();
            for at in arrivals {
                self.delay.observe(now_ms - at);
            }
        }
    }
}

/// Upper bounds of the delay histogram's buckets, in ms: from a quarter
/// second (a short slide, no lateness) to twenty minutes (a long lateness).
pub const DELAY_BUCKETS_MS: [u64; 14] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 180_000, 300_000,
    600_000, 1_200_000,
];

/// Counts per bucket (the last one past every bound), their sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DELAY_BUCKETS_MS.len() + 1],
    sum_ms: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one delay of `ms` (a negative one, from a producer's clock
    /// ahead of ours, as zero).
    ///
    /// ```
    /// use popularity::core::freshness::Histogram;
    ///
    /// let h = Histogram::default();
    /// for ms in [100, 400, 700, 90_000] {
    ///     h.observe(ms);
    /// }
    /// assert_eq!(h.count(), 4);
    /// assert_eq!(h.quantile_ms(0.5), Some(500), "the bucket holding the median");
    /// assert_eq!(h.quantile_ms(0.99), Some(120_000));
    /// ```
    pub fn observe(&self, ms: i64) {
        let ms = ms.max(0) as u64;
        let i = DELAY_BUCKETS_MS.partition_point(|&b| b < ms);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Their sum, in ms.
    pub fn sum_ms(&self) -> u64 {
        self.sum_ms.load(Ordering::Relaxed)
    }

    /// `(upper bound in ms, observations at or under it)` per bucket, the
    /// last one's bound `None` (every observation).
    pub fn cumulative(&self) -> Vec<(Option<u64>, u64)> {
        let bounds = DELAY_BUCKETS_MS.iter().map(|&b| Some(b)).chain([None]);
        let mut total = 0;
        bounds
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (bound, total)
            })
            .collect()
    }

    /// The upper bound of the bucket holding quantile `q` (a bound, as
    /// Prometheus estimates it from the same buckets); `None` before any
    /// observation, or when it lies past the last bound.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let buckets = self.cumulative();
        let total = buckets.last().map_or(0, |b| b.1);
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let found = buckets.iter().find(|(_, n)| *n >= rank);
        found.filter(|_| total > 0).and_then(|(bound, _)| *bound)
    }
}
