//! The Prometheus export: every metric declared once, in [`METRICS`].
//!
//! Workers keep plain atomics ([`Stats`]); a scrape copies them into a
//! Prometheus registry and renders the text format, so the hot path never
//! touches the registry. Names carry the `popularity_` prefix, counters end
//! in `_total`, times in `_seconds`, sizes in `_bytes`; the only labels are
//! the process index and, per source partition, the partition (low
//! cardinality), plus the bounded top-5 of `popularity_trending_value`.

use std::sync::atomic::Ordering;

use prometheus::proto::{self, MetricFamily};
use prometheus::{Counter, CounterVec, Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use crate::core::error::{Error, Result};
use crate::core::freshness::Histogram;
use crate::core::stats::Stats;
use crate::source::kafka::ProgressBoard;

use super::query::{live_model, Api};

/// Where a metric's value comes from.
enum Read {
    /// A counter: a running total of the job's.
    Counter(fn(&Stats) -> f64),
    /// A gauge: a level of the job's.
    Gauge(fn(&Stats) -> f64),
    /// A counter per source partition.
    PartitionCounter(fn(&Stats, &ProgressBoard) -> Vec<(u32, f64)>),
    /// A gauge per source partition.
    PartitionGauge(fn(&Stats, &ProgressBoard) -> Vec<(u32, f64)>),
    /// The current top titles of each category, from the live model.
    Trending,
    /// A histogram of delays (ms), exported in seconds.
    Histogram(fn(&Stats) -> &Histogram),
}

/// One exported metric.
struct Metric {
    name: &'static str,
    help: &'static str,
    read: Read,
}

const fn m(name: &'static str, help: &'static str, read: Read) -> Metric {
    Metric { name, help, read }
}

fn n(a: &std::sync::atomic::AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

fn kafka(
    board: &ProgressBoard,
    f: fn(&crate::source::kafka::PartitionProgress) -> f64,
) -> Vec<(u32, f64)> {
    board
        .lock()
        .map(|b| b.iter().map(|(p, progress)| (*p, f(progress))).collect())
        .unwrap_or_default()
}

fn clocks(stats: &Stats, f: fn(&(i64, i64)) -> i64) -> Vec<(u32, f64)> {
    stats
        .partition_clocks
        .lock()
        .map(|c| c.iter().map(|(p, v)| (*p, f(v) as f64 / 1000.0)).collect())
        .unwrap_or_default()
}

/// Every metric the job exports.
static METRICS: &[Metric] = &[
    m("popularity_records_read_total", "Records read from sources, valid or not.", Read::Counter(|s| n(&s.read))),
    m("popularity_records_decoded_total", "Records decoded into events.", Read::Counter(|s| n(&s.decoded))),
    m("popularity_records_invalid_total", "Records rejected by the decoder.", Read::Counter(|s| n(&s.invalid))),
    m("popularity_events_late_total", "Valid events behind their partition's watermark.", Read::Counter(|s| n(&s.late))),
    m("popularity_events_clock_skew_total", "Valid events too far ahead of their partition's clock, never corroborated (dead-lettered as clock_skew).", Read::Counter(|s| n(&s.clock_skew))),
    m("popularity_views_total", "started_video events counted as views.", Read::Counter(|s| n(&s.views))),
    m("popularity_dead_letters_total", "Records written to the dead-letter sink.", Read::Counter(|s| n(&s.dead_lettered))),
    m("popularity_kafka_client_errors_total", "Errors the Kafka client reported (connection, fetch, broker); most are retried by it.", Read::Counter(|_| crate::source::kafka::client_errors() as f64)),
    m("popularity_kafka_undecodable_batches_total", "Record batches the Kafka client could not decode (the job stops on each rather than skip it).", Read::Counter(|_| crate::source::kafka::undecodable_batches() as f64)),
    m("popularity_dead_letters_undeliverable_total", "Dead letters the dead-letter topic did not take; each is in the local spool file.", Read::Counter(|_| crate::source::kafka::undeliverable() as f64)),
    m("popularity_dead_letters_truncated_total", "Dead letters whose payload was cut to fit the dead-letter topic (original size in a header).", Read::Counter(|_| crate::source::kafka::truncated() as f64)),
    m("popularity_catalog_changes_total", "Catalog changes applied at run time (Kafka topic, file reload).", Read::Counter(|s| n(&s.catalog_changes))),
    m("popularity_snapshot_parts_written_total", "Snapshot parts written.", Read::Counter(|s| n(&s.parts_written))),
    m("popularity_snapshot_rows_written_total", "Snapshot rows written.", Read::Counter(|s| n(&s.rows_written))),
    m("popularity_snapshot_bytes_written_total", "Snapshot bytes written.", Read::Counter(|s| n(&s.bytes_written))),
    m("popularity_snapshot_write_seconds_total", "Time spent encoding and storing snapshot parts.", Read::Counter(|s| n(&s.part_write_micros) / 1e6)),
    m("popularity_hours_published_total", "Hours whose _SUCCESS manifest was written.", Read::Counter(|s| n(&s.hours_published))),
    m("popularity_store_retries_total", "Store operations retried after a transient failure.", Read::Counter(|s| n(&s.store_retries))),
    m("popularity_checkpoints_total", "Checkpoint parts this process wrote.", Read::Counter(|s| n(&s.checkpoints))),
    m("popularity_checkpoint_failures_total", "Checkpoint parts that could not be written, or were skipped because the writer was still busy (the next checkpoint covers them).", Read::Counter(|s| n(&s.checkpoint_failures))),
    m("popularity_http_connections_refused_total", "HTTP connections closed on arrival because metrics.max-connections were open.", Read::Counter(|_| super::refused_connections() as f64)),
    m("popularity_live_state_entries", "Live window state: pending (content, pane) updates plus current counts.", Read::Gauge(|s| s.live_state.load(Ordering::Relaxed) as f64)),
    m("popularity_model_uncataloged_titles", "Titles outside the catalog (ids only clients sent) the model keeps one by one; each worker keeps at most model.uncataloged-limit.", Read::Gauge(|s| s.model_uncataloged.load(Ordering::Relaxed) as f64)),
    m("popularity_model_overflowed_facts_total", "Facts (title, breakdown cell, pane) of ids outside the catalog counted together under the overflow title because their worker kept model.uncataloged-limit such titles already.", Read::Counter(|s| n(&s.model_overflowed))),
    m("popularity_watermark_seconds", "Lowest input watermark over this process's workers (event time, seconds).", Read::Gauge(|s| (s.low_watermark_ms() / 1000) as f64)),
    m("popularity_watermark_lag_seconds", "Wall clock minus the lowest watermark.", Read::Gauge(|s| match s.low_watermark_ms() {
        0 => 0.0,
        w => ((crate::core::time::now_ms() - w) / 1000) as f64,
    })),
    m("popularity_frontier_seconds", "Dataflow output frontier (event time, seconds): hours before it are final.", Read::Gauge(|s| (s.frontier_ms.load(Ordering::Relaxed) / 1000) as f64)),
    m("popularity_worker_stalled_seconds", "The longest any worker of this process has gone without a step (/healthz fails past metrics.stall-timeout).", Read::Gauge(|s| s.steps.longest_wait(crate::core::time::now_ms()).map_or(0.0, |(_, ms)| ms as f64 / 1000.0))),
    m("popularity_checkpoint_duration_seconds", "Time the last checkpoint part took to write (seconds, rounded down).", Read::Gauge(|s| (s.checkpoint_micros.load(Ordering::Relaxed) / 1_000_000) as f64)),
    m("popularity_checkpoint_bytes", "Size of the last checkpoint part.", Read::Gauge(|s| n(&s.checkpoint_bytes))),
    m("popularity_store_calls_total", "Calls to the object store (snapshots and checkpoints).", Read::Counter(|s| n(&s.store_calls))),
    m("popularity_store_call_seconds_total", "Time spent in object store calls; divided by the calls, the mean latency.", Read::Counter(|s| n(&s.store_call_micros) / 1e6)),
    m("popularity_store_errors_total", "Object store calls that failed (each retried or counted where it mattered).", Read::Counter(|s| n(&s.store_errors))),
    m("popularity_store_timeouts_total", "Object store calls that timed out (sink.s3 connect-, read-, attempt- and operation-timeout).", Read::Counter(|s| n(&s.store_timeouts))),
    m("popularity_store_jobs_abandoned_total", "Store jobs (parts, hour manifests) a stopping process gave up unfinished; their hours have no _SUCCESS and a restart writes them again.", Read::Counter(|s| n(&s.store_jobs_abandoned))),
    m("popularity_hours_held_back", "Hours this process holds back (unpublished, and no checkpoint passes them) because a store write failed for good; the job stops with an error naming the hour.", Read::Gauge(|s| n(&s.hours_held_back))),
    m("popularity_checkpoints_completed_total", "Checkpoints whose manifest this process wrote (only the process of worker 0 writes manifests).", Read::Counter(|s| n(&s.checkpoints_completed))),
    m("popularity_view_visible_delay_seconds", "Delay from a sampled Kafka record's timestamp (its arrival) to every worker's live shard showing its pane (one record in 256 by offset).", Read::Histogram(|s| &s.freshness.delay)),
    m("popularity_freshness_samples_dropped_total", "Freshness samples not tracked because 100 000 were waiting to be shown.", Read::Counter(|s| n(&s.freshness.dropped))),
    m("popularity_view_provisional_delay_seconds", "Delay from a sampled Kafka record's timestamp (its arrival) to every worker's provisional counts holding it (metrics.provisional; one record in 256 by offset).", Read::Histogram(|s| &s.early_freshness.delay)),
    m("popularity_provisional_samples_dropped_total", "Provisional freshness samples not tracked because 100 000 were waiting to be shown.", Read::Counter(|s| n(&s.early_freshness.dropped))),
    m("popularity_checkpoint_last_completed_timestamp_seconds", "When the last checkpoint completed (Unix seconds; the process of worker 0 reports it).", Read::Gauge(|s| (s.checkpoint_completed_ms.load(Ordering::Relaxed) / 1000) as f64)),
    m("popularity_checkpoint_store_errors_total", "Store calls that failed while completing or pruning checkpoints (retried at the next poll).", Read::Counter(|s| n(&s.checkpoint_store_errors))),
    m("popularity_checkpoint_last_success_timestamp_seconds", "When the last checkpoint part was written (Unix seconds).", Read::Gauge(|s| (s.checkpoint_last_ms.load(Ordering::Relaxed) / 1000) as f64)),
    m("popularity_kafka_next_offset", "Next offset to read, per partition.", Read::PartitionGauge(|_, b| kafka(b, |p| p.next_offset as f64))),
    m("popularity_kafka_high_watermark", "The partition's end offset as the broker reports it.", Read::PartitionGauge(|_, b| kafka(b, |p| p.high_watermark as f64))),
    m("popularity_kafka_consumer_lag", "Records in the partition not read yet.", Read::PartitionGauge(|_, b| kafka(b, |p| p.lag() as f64))),
    m("popularity_kafka_offsets_lost_total", "Offsets skipped because the partition's log no longer held them (source.kafka.on-lost-offsets).", Read::PartitionCounter(|_, b| kafka(b, |p| p.lost as f64))),
    m("popularity_kafka_offset_gaps_total", "Offsets the broker passed over between two records it handed out: normal for transaction markers and compacted topics, a loss anywhere else.", Read::PartitionCounter(|_, b| kafka(b, |p| p.gaps as f64))),
    m("popularity_partition_watermark_seconds", "Each source partition's watermark (event time, Unix seconds).", Read::PartitionGauge(|s, _| clocks(s, |c| c.0))),
    m("popularity_partition_clock_skew_seconds", "The largest distance ahead of its partition's clock of a record rejected as clock_skew.", Read::PartitionGauge(|s, _| clocks(s, |c| c.1))),
    m("popularity_trending_value", "Value ranked by (score in ppm, or views times decay) of the current top titles per category.", Read::Trending),
];

/// The names of every metric the job exports (the tests check dashboards
/// and alert rules against them).
pub fn metric_names() -> Vec<String> {
    let series = |m: &Metric| match m.read {
        Read::Histogram(_) => ["_bucket", "_sum", "_count"]
            .map(|s| format!("{}{s}", m.name))
            .to_vec(),
        _ => vec![m.name.to_string()],
    };
    METRICS.iter().flat_map(series).collect()
}

/// Entries per category in `popularity_trending_value`.
const TRENDING_GAUGE_K: usize = 5;

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Counters(CounterVec),
    Gauges(GaugeVec),
    /// Built at each scrape: see [`histogram_family`].
    Histogram,
}

/// The registry a scrape fills and renders.
pub(super) struct Exported {
    registry: Registry,
    process: String,
    series: Vec<(&'static Metric, Series)>,
}

fn perr(e: prometheus::Error) -> Error {
    Error::Internal(format!("metrics registry (a bug): {e}"))
}

/// Raises a counter to a running total (counters only go up).
fn raise(c: &Counter, total: f64) {
    let had = c.get();
    if total > had {
        c.inc_by(total - had);
    }
}

impl Exported {
    pub(super) fn new(process: usize) -> Result<Exported> {
        let labels = [("process".to_string(), process.to_string())].into();
        let registry = Registry::new_custom(None, Some(labels)).map_err(perr)?;
        let mut series = Vec::with_capacity(METRICS.len());
        for metric in METRICS {
            let opts = Opts::new(metric.name, metric.help);
            let s = match metric.read {
                Read::Counter(_) => Series::Counter(Counter::with_opts(opts).map_err(perr)?),
                Read::Gauge(_) => Series::Gauge(Gauge::with_opts(opts).map_err(perr)?),
                Read::PartitionCounter(_) => {
                    Series::Counters(CounterVec::new(opts, &["partition"]).map_err(perr)?)
                }
                Read::PartitionGauge(_) => {
                    Series::Gauges(GaugeVec::new(opts, &["partition"]).map_err(perr)?)
                }
                Read::Trending => Series::Gauges(
                    GaugeVec::new(opts, &["category", "rank", "content_id", "name"])
                        .map_err(perr)?,
                ),
                Read::Histogram(_) => {
                    series.push((metric, Series::Histogram));
                    continue;
                }
            };
            let collector: Box<dyn prometheus::core::Collector> = match &s {
                Series::Counter(c) => Box::new(c.clone()),
                Series::Gauge(g) => Box::new(g.clone()),
                Series::Counters(c) => Box::new(c.clone()),
                Series::Gauges(g) => Box::new(g.clone()),
                Series::Histogram => continue,
            };
            registry.register(collector).map_err(perr)?;
            series.push((metric, s));
        }
        let process = process.to_string();
        Ok(Exported {
            registry,
            process,
            series,
        })
    }

    /// Copies the job's values in and renders the text format.
    pub(super) fn render(&self, stats: &Stats, board: &ProgressBoard, api: &Api) -> Vec<u8> {
        for (metric, s) in &self.series {
            match (&metric.read, s) {
                (Read::Counter(f), Series::Counter(c)) => raise(c, f(stats)),
                (Read::Gauge(f), Series::Gauge(g)) => g.set(f(stats)),
                (Read::PartitionCounter(f), Series::Counters(c)) => {
                    for (p, v) in f(stats, board) {
                        raise(&c.with_label_values(&[&p.to_string()]), v);
                    }
                }
                (Read::PartitionGauge(f), Series::Gauges(g)) => {
                    for (p, v) in f(stats, board) {
                        g.with_label_values(&[&p.to_string()]).set(v);
                    }
                }
                (Read::Trending, Series::Gauges(g)) => trending(g, api),
                _ => {}
            }
        }
        let mut families = self.registry.gather();
        for (metric, _) in &self.series {
            if let Read::Histogram(f) = metric.read {
                families.push(histogram_family(metric, f(stats), &self.process));
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            out = format!("# metrics could not be encoded: {e}\n").into_bytes();
        }
        out
    }
}

/// A histogram's buckets as they stand, in seconds, with the registry's
/// `process` label.
fn histogram_family(metric: &Metric, h: &Histogram, process: &str) -> MetricFamily {
    let buckets = h.cumulative();
    let mut proto = proto::Histogram::default();
    proto.set_sample_count(buckets.last().map_or(0, |b| b.1));
    proto.set_sample_sum(h.sum_ms() as f64 / 1000.0);
    let bounded = buckets
        .iter()
        .filter_map(|(bound, n)| Some((bound.as_ref()?, n)));
    let buckets = bounded.map(|(&bound, &n)| {
        let mut b = proto::Bucket::default();
        b.set_upper_bound(bound as f64 / 1000.0);
        b.set_cumulative_count(n);
        b
    });
    proto.set_bucket(buckets.collect());
    let mut label = proto::LabelPair::default();
    label.set_name("process".into());
    label.set_value(process.into());
    let mut m = proto::Metric::default();
    m.set_label(vec![label]);
    m.set_histogram(proto);
    let mut family = MetricFamily::default();
    family.set_name(metric.name.into());
    family.set_help(metric.help.into());
    family.set_field_type(proto::MetricType::HISTOGRAM);
    family.set_metric(vec![m]);
    family
}

/// The current top 5 of each category: reset at every scrape, so at most
/// 30 series exist at a time however the titles change. A process of a
/// cluster holds only its shards' titles, so only a lone process exports it.
fn trending(gauges: &GaugeVec, api: &Api) {
    gauges.reset();
    if api.processes != 1 {
        return;
    }
    let Some(live) = live_model(api) else { return };
    for category in crate::core::model::CATEGORIES {
        let ranked = crate::core::model::top(&live.rows, category, None, TRENDING_GAUGE_K);
        for (i, (v, r)) in ranked.iter().enumerate() {
            let name = api.catalog.get(r.id).map_or("", |t| t.name.as_str());
            let labels = [category, &(i + 1).to_string(), &r.id.to_string(), name];
            gauges.with_label_values(&labels).set(*v);
        }
    }
}
