//! `[source.generator]`: the synthetic traffic's shape.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How popularity is spread over titles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Popularity {
    /// `1/rank^s`: a few hits and a long tail.
    Zipf,
    /// Every title equally likely (benchmarks).
    Uniform,
}

/// Generator settings (the `[source.generator]` table of a job file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GeneratorConfig {
    /// Events to produce in total (0: no end).
    pub events: u64,
    /// The seed: same seed, same events.
    pub seed: u64,
    /// Wall-clock pacing in events/s over all workers (0: as fast as possible).
    pub rate: f64,
    /// Event time of the first event, RFC 3339 (`2026-01-01T00:00:00Z`).
    pub start: String,
    /// Mean events per second of *event* time (2000 = 1 ms per 2 events).
    pub time_rate: f64,
    /// Draw from `ids` plain content ids `1..=ids` instead of the catalog.
    pub ids: Option<u64>,
    /// Size of the synthesized catalog when the job names no catalog file.
    pub titles: usize,
    /// Popularity distribution.
    pub popularity: Popularity,
    /// Zipf exponent.
    pub zipf_exponent: f64,
    /// Traffic follows a 24-hour curve (evening peak) starting at `start`.
    pub daily_rhythm: bool,
    /// Share of traffic that goes to live events while any is on.
    pub live_share: f64,
    /// Share of traffic that goes to a live event's clips right after it ends.
    pub clip_share: f64,
    /// Number of distinct viewers.
    pub users: u64,
    /// Relative weights of started / heartbeat / stopped events.
    pub mix: [f64; 3],
    /// Share of events displaced back in time by up to `max-disorder`.
    pub out_of_order: f64,
    /// Largest displacement of an out-of-order event.
    #[serde(with = "humantime_serde")]
    pub max_disorder: Duration,
    /// Share of events that arrive `late-by` behind: past any sane lateness.
    pub late: f64,
    /// How far behind a late event is.
    #[serde(with = "humantime_serde")]
    pub late_by: Duration,
    /// Share of records that are malformed on the wire.
    pub invalid: f64,
    /// Partitions the stream is cut into (chunks of 64 items each; partition
    /// `p` is read by worker `p mod workers`), whatever the number of workers.
    pub partitions: usize,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            events: 2_000_000,
            seed: 42,
            rate: 0.0,
            start: "2026-01-01T00:00:00Z".into(),
            time_rate: 150.0,
            ids: None,
            titles: 20_000,
            popularity: Popularity::Zipf,
            zipf_exponent: 1.0,
            daily_rhythm: true,
            live_share: 0.3,
            clip_share: 0.1,
            users: 1_000_000,
            mix: [0.5, 0.4, 0.1],
            out_of_order: 0.05,
            max_disorder: Duration::from_secs(90),
            late: 0.001,
            late_by: Duration::from_secs(15 * 60),
            invalid: 0.0,
            partitions: super::DEFAULT_PARTITIONS,
        }
    }
}
