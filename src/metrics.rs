//! The Prometheus endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! Workers keep plain atomics ([`Stats`]); a scrape copies them into a
//! Prometheus registry and renders the text format, so the hot path never
//! touches the registry. Names carry the `popularity_` prefix, counters end
//! in `_total`, times in `_seconds`, sizes in `_bytes`; the only labels are
//! the process index and, for Kafka, the partition (low cardinality).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::catalog::{Catalog, Kind};
use crate::dataflow::live::LiveBoard;
use crate::error::{Error, Result};
use crate::source::kafka::ProgressBoard;
use crate::stats::Stats;
use crate::time::{rfc3339, WindowSpec};

/// Every metric the job exports (also checked against the dashboard and alert rules by the tests).
pub const METRIC_NAMES: &[&str] = &[
    "popularity_records_read_total",
    "popularity_records_decoded_total",
    "popularity_records_invalid_total",
    "popularity_events_late_total",
    "popularity_events_clock_skew_total",
    "popularity_kafka_client_errors_total",
    "popularity_kafka_undecodable_batches_total",
    "popularity_kafka_offsets_lost_total",
    "popularity_dead_letters_undeliverable_total",
    "popularity_dead_letters_truncated_total",
    "popularity_partition_watermark_seconds",
    "popularity_partition_clock_skew_seconds",
    "popularity_views_total",
    "popularity_dead_letters_total",
    "popularity_snapshot_parts_written_total",
    "popularity_snapshot_rows_written_total",
    "popularity_snapshot_bytes_written_total",
    "popularity_snapshot_write_seconds_total",
    "popularity_hours_published_total",
    "popularity_store_retries_total",
    "popularity_live_state_entries",
    "popularity_watermark_seconds",
    "popularity_watermark_lag_seconds",
    "popularity_frontier_seconds",
    "popularity_kafka_next_offset",
    "popularity_kafka_high_watermark",
    "popularity_kafka_consumer_lag",
    "popularity_checkpoints_total",
    "popularity_checkpoint_failures_total",
    "popularity_checkpoint_duration_seconds",
    "popularity_checkpoint_bytes",
    "popularity_checkpoint_last_success_timestamp_seconds",
    "popularity_trending_value",
    "popularity_catalog_changes_total",
];

/// Entries per category in `popularity_trending_value`.
const TRENDING_GAUGE_K: usize = 5;

/// Reads a counter's value from the job's stats.
type CounterFn = fn(&Stats) -> u64;
/// Reads a gauge's value from the job's stats.
type GaugeFn = fn(&Stats) -> i64;

struct Exported {
    registry: Registry,
    counters: Vec<(IntCounter, CounterFn)>,
    gauges: Vec<(IntGauge, GaugeFn)>,
    kafka: [IntGaugeVec; 3],
    /// Per Kafka partition: offsets skipped as no longer in the log.
    lost: prometheus::IntCounterVec,
    /// Per source partition: watermark, largest clock skew rejected (seconds).
    clocks: [prometheus::GaugeVec; 2],
    write_seconds: prometheus::Counter,
    trending: prometheus::GaugeVec,
}

fn perr(e: prometheus::Error) -> Error {
    Error::Internal(format!("metrics: {e}"))
}

impl Exported {
    fn new(process: usize) -> Result<Exported> {
        let registry = Registry::new_custom(
            None,
            Some([("process".to_string(), process.to_string())].into()),
        )
        .map_err(perr)?;
        let counter_defs: [(&str, &str, CounterFn); 17] = [
            (
                "popularity_kafka_client_errors_total",
                "Errors the Kafka client reported (connection, fetch, broker); most are retried by it.",
                |_| crate::source::kafka::client_errors(),
            ),
            (
                "popularity_kafka_undecodable_batches_total",
                "Record batches the Kafka client could not decode (the job stops on each rather than skip it).",
                |_| crate::source::kafka::undecodable_batches(),
            ),
            (
                "popularity_dead_letters_undeliverable_total",
                "Dead letters the dead-letter topic did not take; each is in the local spool file.",
                |_| crate::source::kafka::undeliverable(),
            ),
            (
                "popularity_dead_letters_truncated_total",
                "Dead letters whose payload was cut to fit the dead-letter topic (original size in a header).",
                |_| crate::source::kafka::truncated(),
            ),
            (
                "popularity_events_clock_skew_total",
                "Valid events too far ahead of their partition's clock, never corroborated (dead-lettered as clock_skew).",
                |s| s.clock_skew.load(Ordering::Relaxed),
            ),
            (
                "popularity_catalog_changes_total",
                "Catalog changes applied at run time (Kafka topic, file reload).",
                |s| s.catalog_changes.load(Ordering::Relaxed),
            ),
            (
                "popularity_records_read_total",
                "Records read from sources, valid or not.",
                |s| s.read.load(Ordering::Relaxed),
            ),
            (
                "popularity_records_decoded_total",
                "Records decoded into events.",
                |s| s.decoded.load(Ordering::Relaxed),
            ),
            (
                "popularity_records_invalid_total",
                "Records rejected by the decoder.",
                |s| s.invalid.load(Ordering::Relaxed),
            ),
            (
                "popularity_events_late_total",
                "Valid events behind their partition's watermark.",
                |s| s.late.load(Ordering::Relaxed),
            ),
            (
                "popularity_views_total",
                "started_video events counted as views.",
                |s| s.views.load(Ordering::Relaxed),
            ),
            (
                "popularity_dead_letters_total",
                "Records written to the dead-letter sink.",
                |s| s.dead_lettered.load(Ordering::Relaxed),
            ),
            (
                "popularity_snapshot_parts_written_total",
                "Snapshot parts written.",
                |s| s.parts_written.load(Ordering::Relaxed),
            ),
            (
                "popularity_snapshot_rows_written_total",
                "Snapshot rows written.",
                |s| s.rows_written.load(Ordering::Relaxed),
            ),
            (
                "popularity_snapshot_bytes_written_total",
                "Snapshot bytes written.",
                |s| s.bytes_written.load(Ordering::Relaxed),
            ),
            (
                "popularity_hours_published_total",
                "Hours whose _SUCCESS manifest was written.",
                |s| s.hours_published.load(Ordering::Relaxed),
            ),
            (
                "popularity_store_retries_total",
                "Store operations retried after a transient failure.",
                |s| s.store_retries.load(Ordering::Relaxed),
            ),
        ];
        let more_counters: [(&str, &str, CounterFn); 2] = [
            (
                "popularity_checkpoints_total",
                "Checkpoint parts this process wrote.",
                |s| s.checkpoints.load(Ordering::Relaxed),
            ),
            (
                "popularity_checkpoint_failures_total",
                "Checkpoint parts that could not be written.",
                |s| s.checkpoint_failures.load(Ordering::Relaxed),
            ),
        ];
        let mut counters = Vec::new();
        for (name, help, get) in counter_defs.into_iter().chain(more_counters) {
            let c = IntCounter::new(name, help).map_err(perr)?;
            registry.register(Box::new(c.clone())).map_err(perr)?;
            counters.push((c, get));
        }
        let gauge_defs: [(&str, &str, GaugeFn); 7] = [
            (
                "popularity_live_state_entries",
                "Live window state: pending (content, pane) updates plus current counts.",
                |s| s.live_state.load(Ordering::Relaxed),
            ),
            (
                "popularity_watermark_seconds",
                "Lowest input watermark over this process's workers (event time, seconds).",
                |s| s.low_watermark_ms() / 1000,
            ),
            (
                "popularity_watermark_lag_seconds",
                "Wall clock minus the lowest watermark.",
                |s| {
                    let w = s.low_watermark_ms();
                    if w == 0 {
                        0
                    } else {
                        (crate::time::now_ms() - w) / 1000
                    }
                },
            ),
            (
                "popularity_frontier_seconds",
                "Dataflow output frontier (event time, seconds): hours before it are final.",
                |s| s.frontier_ms.load(Ordering::Relaxed) / 1000,
            ),
            (
                "popularity_checkpoint_duration_seconds",
                "Time the last checkpoint part took to write (seconds, rounded down).",
                |s| s.checkpoint_micros.load(Ordering::Relaxed) as i64 / 1_000_000,
            ),
            (
                "popularity_checkpoint_bytes",
                "Size of the last checkpoint part.",
                |s| s.checkpoint_bytes.load(Ordering::Relaxed) as i64,
            ),
            (
                "popularity_checkpoint_last_success_timestamp_seconds",
                "When the last checkpoint part was written (Unix seconds).",
                |s| s.checkpoint_last_ms.load(Ordering::Relaxed) / 1000,
            ),
        ];
        let mut gauges = Vec::new();
        for (name, help, get) in gauge_defs {
            let g = IntGauge::new(name, help).map_err(perr)?;
            registry.register(Box::new(g.clone())).map_err(perr)?;
            gauges.push((g, get));
        }
        let kafka = [
            (
                "popularity_kafka_next_offset",
                "Next offset to read, per partition.",
            ),
            (
                "popularity_kafka_high_watermark",
                "The partition's end offset as the broker reports it.",
            ),
            (
                "popularity_kafka_consumer_lag",
                "Records in the partition not read yet.",
            ),
        ]
        .map(|(n, h)| IntGaugeVec::new(Opts::new(n, h), &["partition"]));
        let [a, b, c] = kafka;
        let kafka = [a.map_err(perr)?, b.map_err(perr)?, c.map_err(perr)?];
        for k in &kafka {
            registry.register(Box::new(k.clone())).map_err(perr)?;
        }
        let lost = prometheus::IntCounterVec::new(
            Opts::new(
                "popularity_kafka_offsets_lost_total",
                "Offsets skipped because the partition's log no longer held them (source.kafka.on-lost-offsets).",
            ),
            &["partition"],
        )
        .map_err(perr)?;
        registry.register(Box::new(lost.clone())).map_err(perr)?;
        let clocks = [
            (
                "popularity_partition_watermark_seconds",
                "Each source partition's watermark (event time, Unix seconds).",
            ),
            (
                "popularity_partition_clock_skew_seconds",
                "The largest distance ahead of its partition's clock of a record rejected as clock_skew.",
            ),
        ]
        .map(|(n, h)| prometheus::GaugeVec::new(Opts::new(n, h), &["partition"]));
        let [a, b] = clocks;
        let clocks = [a.map_err(perr)?, b.map_err(perr)?];
        for c in &clocks {
            registry.register(Box::new(c.clone())).map_err(perr)?;
        }
        let write_seconds = prometheus::Counter::new(
            "popularity_snapshot_write_seconds_total",
            "Time spent encoding and storing snapshot parts.",
        )
        .map_err(perr)?;
        registry
            .register(Box::new(write_seconds.clone()))
            .map_err(perr)?;
        // The current top 5 of each category: reset at every scrape, so at
        // most 30 series exist at a time however the titles change.
        let trending = prometheus::GaugeVec::new(
            Opts::new(
                "popularity_trending_value",
                "Value ranked by (score in ppm, or views times decay) of the current top titles per category.",
            ),
            &["category", "rank", "content_id", "name"],
        )
        .map_err(perr)?;
        registry
            .register(Box::new(trending.clone()))
            .map_err(perr)?;
        Ok(Exported {
            registry,
            counters,
            gauges,
            kafka,
            lost,
            clocks,
            write_seconds,
            trending,
        })
    }

    fn render(&self, stats: &Stats, board: &ProgressBoard, api: &Api) -> Vec<u8> {
        self.trending.reset();
        if api.processes == 1 {
            if let Some(live) = live_model(api) {
                for category in crate::model::CATEGORIES {
                    let ranked = crate::model::top(&live.rows, category, None, TRENDING_GAUGE_K);
                    for (i, (v, r)) in ranked.iter().enumerate() {
                        let name = api.catalog.get(r.id).map(|t| t.name.as_str()).unwrap_or("");
                        self.trending
                            .with_label_values(&[
                                category,
                                &(i + 1).to_string(),
                                &r.id.to_string(),
                                name,
                            ])
                            .set(*v);
                    }
                }
            }
        }
        for (c, get) in &self.counters {
            let now = get(stats);
            let had = c.get();
            if now > had {
                c.inc_by(now - had);
            }
        }
        for (g, get) in &self.gauges {
            g.set(get(stats));
        }
        let secs = stats.part_write_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let had = self.write_seconds.get();
        if secs > had {
            self.write_seconds.inc_by(secs - had);
        }
        if let Ok(board) = board.lock() {
            for (p, progress) in board.iter() {
                let label = p.to_string();
                self.kafka[0]
                    .with_label_values(&[&label])
                    .set(progress.next_offset);
                self.kafka[1]
                    .with_label_values(&[&label])
                    .set(progress.high_watermark);
                self.kafka[2]
                    .with_label_values(&[&label])
                    .set(progress.lag());
                let lost = self.lost.with_label_values(&[&label]);
                if progress.lost > lost.get() {
                    lost.inc_by(progress.lost - lost.get());
                }
            }
        }
        if let Ok(clocks) = stats.partition_clocks.lock() {
            for (p, (mark, skew)) in clocks.iter() {
                let label = p.to_string();
                self.clocks[0]
                    .with_label_values(&[&label])
                    .set(*mark as f64 / 1000.0);
                self.clocks[1]
                    .with_label_values(&[&label])
                    .set(*skew as f64 / 1000.0);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            out = format!("# metrics could not be encoded: {e}\n").into_bytes();
        }
        out
    }
}

/// The live trending page: polls `/api/top` and `/api/stats` every two seconds.
pub const TRENDING_PAGE: &str = include_str!("web/trending.html");

/// What the query API answers from.
pub struct Api {
    /// The live window shards of this process.
    pub live: Arc<LiveBoard>,
    /// Titles, for names, categories and rollups.
    pub catalog: Arc<Catalog>,
    /// Window geometry, to report what `as_of` covers.
    pub window: WindowSpec,
    /// Processes in the cluster: the API answers only when this process holds every shard.
    pub processes: usize,
    /// The live model, when the job maintains it.
    pub model: Option<Arc<crate::dataflow::model::ModelBoard>>,
    /// This process's index.
    pub process: usize,
    /// Every process's endpoint (`host:port`), by index, when known: a
    /// process of a cluster asks the others for their shares.
    pub peers: Vec<String>,
}

/// Starts the endpoint on `listen`; returns the address it is bound to.
/// `ready` turns `/readyz` to 200 once the workers are processing.
pub fn serve(
    listen: &str,
    process: usize,
    stats: Arc<Stats>,
    board: ProgressBoard,
    ready: Arc<AtomicBool>,
    api: Api,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .map_err(|e| Error::io(format!("binding the metrics endpoint to {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("metrics endpoint address", e))?;
    let exported = Exported::new(process)?;
    // One thread per request, a bounded number at a time: a process of a
    // cluster answering a request asks its peers, which may at that moment
    // be asking it; one thread for all requests would deadlock the two.
    // Rendering folds the job's counters into Prometheus counters: one at a time.
    let shared = Arc::new((std::sync::Mutex::new(exported), stats, board, ready, api));
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if busy.fetch_add(1, Ordering::AcqRel) >= MAX_REQUESTS {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    let mut conn = conn;
                    let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n\r\noverload\n");
                    continue;
                }
                let (shared, done) = (shared.clone(), busy.clone());
                let spawned = std::thread::Builder::new()
                    .name("metrics-request".into())
                    .spawn(move || {
                        let (exported, stats, board, ready, api) = &*shared;
                        if let Err(e) = answer(conn, exported, stats, board, ready, api) {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(error = %e, "no thread for a metrics request");
                }
            }
        })
        .map_err(|e| Error::io("starting the metrics thread", e))?;
    Ok(addr)
}

/// Requests answered at once; more get a 503.
const MAX_REQUESTS: usize = 32;

fn answer(
    conn: TcpStream,
    exported: &std::sync::Mutex<Exported>,
    stats: &Stats,
    board: &ProgressBoard,
    ready: &AtomicBool,
    api: &Api,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers (bounded) so the client sees a clean response.
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body): (&str, &str, Vec<u8>) =
        match (request.split_whitespace().next(), path) {
            (Some("GET"), "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4",
                match exported.lock() {
                    Ok(e) => e.render(stats, board, api),
                    Err(_) => b"# metrics unavailable: an earlier render panicked\n".to_vec(),
                },
            ),
            (Some("GET"), "/healthz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
            (Some("GET"), "/" | "/trending") => (
                "200 OK",
                "text/html; charset=utf-8",
                TRENDING_PAGE.as_bytes().to_vec(),
            ),
            (Some("GET"), "/api/stats") => (
                "200 OK",
                "application/json",
                serde_json::to_vec(&stats.snapshot()).unwrap_or_else(|_| b"{}".to_vec()),
            ),
            (Some("GET"), "/readyz") if ready.load(Ordering::Relaxed) => {
                ("200 OK", "text/plain", b"ready\n".to_vec())
            }
            (Some("GET"), "/readyz") => (
                "503 Service Unavailable",
                "text/plain",
                b"starting\n".to_vec(),
            ),
            (Some("GET"), p) if p.starts_with("/api/") => {
                let (status, body) = query(api, p);
                (status, "application/json", body.to_string().into_bytes())
            }
            (Some("GET"), _) => (
                "404 Not Found",
                "text/plain",
                b"not found: try /metrics, /healthz, /readyz, /api/top, /api/titles/<id>\n"
                    .to_vec(),
            ),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                b"only GET\n".to_vec(),
            ),
        };
    let mut conn = conn;
    write!(conn, "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    conn.write_all(&body)?;
    conn.flush()
}

fn bad(status: &'static str, msg: impl Into<String>) -> (&'static str, serde_json::Value) {
    (status, serde_json::json!({ "error": msg.into() }))
}

/// A bad request or an unavailable answer.
type Refusal = (&'static str, serde_json::Value);

/// A checked request: the route and its parsed parameters.
enum Request {
    Top {
        kind: Kind,
        k: usize,
    },
    Title {
        id: u64,
    },
    Trending {
        category: &'static str,
        region: Option<usize>,
        k: usize,
    },
    Breakdown,
}

fn parse_k(args: &std::collections::BTreeMap<String, String>) -> Result<usize, Refusal> {
    match args.get("k").map(|k| k.parse::<usize>()) {
        None => Ok(10),
        Some(Ok(k)) if (1..=1000).contains(&k) => Ok(k),
        Some(_) => Err(bad(
            "400 Bad Request",
            "k must be a whole number from 1 to 1000",
        )),
    }
}

fn only(
    args: &std::collections::BTreeMap<String, String>,
    allowed: &[&str],
    what: &str,
) -> Result<(), Refusal> {
    match args.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            "400 Bad Request",
            format!("unknown parameter `{k}` ({what})"),
        )),
        None => Ok(()),
    }
}

/// Checks a request the same way on every process, before any fan-out.
fn parse_request(
    api: &Api,
    route: &str,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<Request, Refusal> {
    if let Some(id) = route.strip_prefix("/api/titles/") {
        if !args.is_empty() {
            return Err(bad(
                "400 Bad Request",
                "/api/titles/<id> takes no parameters",
            ));
        }
        let Ok(id) = id.parse::<u64>() else {
            return Err(bad(
                "400 Bad Request",
                format!("`{id}` is not a content id"),
            ));
        };
        if api.catalog.get(id).is_none() {
            return Err(bad(
                "404 Not Found",
                format!("no title {id} in the catalog"),
            ));
        }
        return Ok(Request::Title { id });
    }
    match route {
        "/api/top" => {
            only(args, &["category", "k"], "category, k")?;
            let category = args.get("category").map(String::as_str).unwrap_or("episode");
            let Some(kind) = Kind::parse(category) else {
                return Err(bad(
                    "400 Bad Request",
                    format!("unknown category `{category}` (movie, show, episode, live, clip, channel)"),
                ));
            };
            Ok(Request::Top { kind, k: parse_k(args)? })
        }
        "/api/trending" | "/api/breakdown" if api.model.is_none() => Err(bad(
            "404 Not Found",
            "this job does not maintain the model ([model] enabled = false)",
        )),
        "/api/breakdown" => {
            only(args, &[], "/api/breakdown takes none")?;
            Ok(Request::Breakdown)
        }
        "/api/trending" => {
            only(args, &["category", "region", "k"], "category, region, k")?;
            let category = args.get("category").map(String::as_str).unwrap_or("all");
            let Some(category) = crate::model::CATEGORIES.iter().find(|c| **c == category) else {
                return Err(bad(
                    "400 Bad Request",
                    format!("unknown category `{category}` ({})", crate::model::CATEGORIES.join(", ")),
                ));
            };
            let region = match args.get("region").map(String::as_str) {
                None | Some("") => None,
                Some(code) => match crate::event::Region::parse(code) {
                    Some(r) => Some(r.0 as usize),
                    None => {
                        return Err(bad(
                            "400 Bad Request",
                            format!("unknown region `{code}` ({})", crate::event::REGIONS.join(", ")),
                        ))
                    }
                },
            };
            Ok(Request::Trending { category, region, k: parse_k(args)? })
        }
        _ => Err(bad("404 Not Found", format!("no such endpoint `{route}`; try /api/top?category=episode&k=10, /api/trending?category=all&region=IN-MH, /api/breakdown or /api/titles/<id>"))),
    }
}

/// Answers `/api/top`, `/api/titles/<id>`, `/api/trending` and
/// `/api/breakdown`. Each process answers from its own shards
/// (`/api/local/...`); a process of a cluster asks every peer for its
/// local answer and merges them, which is exact: rankings merge each
/// process's top k, totals add up, and a title lives on one process.
fn query(api: &Api, path: &str) -> (&'static str, serde_json::Value) {
    let (route, params) = path.split_once('?').unwrap_or((path, ""));
    let mut args = std::collections::BTreeMap::new();
    for kv in params.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        args.insert(k.to_string(), v.to_string());
    }
    let (local_only, route) = match route.strip_prefix("/api/local") {
        Some(rest) => (true, rest),
        None => (false, route),
    };
    let request = match parse_request(api, route, &args) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let mine = local_answer(api, &request);
    if local_only || api.processes == 1 {
        return match mine {
            Ok(local) if local_only => ("200 OK", local),
            Ok(local) => merge(api, &request, vec![local]),
            Err(refusal) => refusal,
        };
    }
    if api.peers.len() != api.processes {
        return bad("503 Service Unavailable", "the addresses of the other processes are unknown (metrics.listen with port 0, or no hostfile); ask each process for /api/local/...");
    }
    let mut locals = Vec::with_capacity(api.processes);
    for (i, peer) in api.peers.iter().enumerate() {
        let answer = if i == api.process {
            mine.clone()
        } else {
            ask_peer(peer, &format!("/api/local{path}"))
        };
        match answer {
            Ok(v) => locals.push(v),
            Err(refusal) => return refusal,
        }
    }
    merge(api, &request, locals)
}

/// GET `path` from a peer's endpoint; its JSON answer or why not.
fn ask_peer(addr: &str, path: &str) -> Result<serde_json::Value, Refusal> {
    let unavailable = |why: String| {
        bad(
            "503 Service Unavailable",
            format!("process at {addr}: {why}"),
        )
    };
    let fetch = || -> std::io::Result<(String, String)> {
        use std::io::Read as _;
        use std::net::ToSocketAddrs as _;
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut conn = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        conn.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Ok((
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        ))
    };
    let (status, body) = fetch().map_err(|e| unavailable(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| unavailable(format!("not JSON: {e}")))?;
    if !status.contains(" 200 ") {
        return Err(unavailable(
            value["error"].as_str().unwrap_or(&status).to_string(),
        ));
    }
    Ok(value)
}

/// This process's share of an answer, in a mergeable form.
fn local_answer(api: &Api, request: &Request) -> Result<serde_json::Value, Refusal> {
    let none_yet = || {
        bad(
            "503 Service Unavailable",
            "nothing published yet; retry in a second",
        )
    };
    match request {
        Request::Top { kind, .. } => {
            let shards = api.live.shards();
            let as_of = shards
                .values()
                .map(|s| s.as_of)
                .min()
                .ok_or_else(none_yet)?;
            let mut totals: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
            for shard in shards.values() {
                for (&id, &v) in shard.counts.iter() {
                    if let Some(b) = crate::rank::bucket(&api.catalog, id, *kind) {
                        *totals.entry(b).or_insert(0) += v;
                    }
                }
            }
            // Every bucket: a show's titles may live on several processes.
            let totals: Vec<(u64, i64)> = totals.into_iter().filter(|(_, v)| *v != 0).collect();
            Ok(serde_json::json!({ "as_of": as_of, "totals": totals }))
        }
        Request::Title { id } => {
            let shards = api.live.shards();
            let as_of = shards
                .values()
                .map(|s| s.as_of)
                .min()
                .ok_or_else(none_yet)?;
            let views: i64 = shards.values().filter_map(|s| s.counts.get(id)).sum();
            let mut out = serde_json::json!({ "as_of": as_of, "views": views });
            if api.model.is_some() {
                let live = live_model(api).ok_or_else(none_yet)?;
                out["model_as_of"] = serde_json::json!(live.as_of);
                out["model"] = match live.rows.iter().find(|r| r.id == *id) {
                    Some(r) => row_json(r, api),
                    None => serde_json::Value::Null,
                };
            }
            Ok(out)
        }
        Request::Breakdown => {
            let live = live_model(api).ok_or_else(none_yet)?;
            // Titles only: shows and channels are sums of titles.
            let mut sum = crate::model::Measures::default();
            for r in live
                .rows
                .iter()
                .filter(|r| !matches!(r.info.map(|i| i.kind), Some(Kind::Show | Kind::Channel)))
            {
                sum.add(&r.m);
            }
            Ok(serde_json::json!({
                "as_of": live.as_of,
                "views": sum.views,
                "watch_ms": sum.watch_ms,
                "views_24h_episodes": live.total_24h,
                "by_tier": named(&TIERS, &sum.tier),
                "by_device": named(&DEVICES, &sum.device),
                "by_region": named(&crate::event::REGIONS, &sum.region),
            }))
        }
        Request::Trending {
            category,
            region,
            k,
        } => {
            let live = live_model(api).ok_or_else(none_yet)?;
            let ranked = crate::model::top(&live.rows, category, *region, *k);
            let titles: Vec<serde_json::Value> = ranked
                .iter()
                .map(|(v, r)| {
                    let mut j = row_json(r, api);
                    j["value"] = serde_json::json!(v);
                    j
                })
                .collect();
            Ok(serde_json::json!({ "as_of": live.as_of, "titles": titles }))
        }
    }
}

/// Merges the local answers of every process into the answer.
fn merge(api: &Api, request: &Request, locals: Vec<serde_json::Value>) -> Refusal {
    let as_of = |key: &str| {
        locals
            .iter()
            .filter_map(|l| l[key].as_u64())
            .min()
            .unwrap_or(0)
    };
    let window = |pane: u64| {
        let (start, end) = api.window.window_bounds(pane);
        serde_json::json!({ "start": rfc3339(start), "end": rfc3339(end) })
    };
    let sum = |path: &[&str]| -> i64 {
        locals
            .iter()
            .map(|l| path.iter().fold(l, |v, p| &v[*p]).as_i64().unwrap_or(0))
            .sum()
    };
    match request {
        Request::Top { kind, k } => {
            let mut totals: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
            for l in &locals {
                for pair in l["totals"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(v)) = (pair[0].as_u64(), pair[1].as_i64()) {
                        *totals.entry(id).or_insert(0) += v;
                    }
                }
            }
            let mut rows: Vec<(u64, i64)> = totals.into_iter().collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            rows.truncate(*k);
            let titles: Vec<serde_json::Value> = rows
                .iter()
                .enumerate()
                .map(|(i, (id, v))| {
                    serde_json::json!({ "rank": i + 1, "content_id": id, "name": api.catalog.get(*id).map(|t| t.name.as_str()).unwrap_or(""), "views": v })
                })
                .collect();
            (
                "200 OK",
                serde_json::json!({ "category": kind.as_str(), "k": k, "window": window(as_of("as_of")), "titles": titles }),
            )
        }
        Request::Title { id } => {
            let title = api.catalog.get(*id);
            let mut body = serde_json::json!({
                "content_id": id,
                "name": title.map(|t| t.name.as_str()).unwrap_or(""),
                "kind": title.map(|t| t.kind.as_str()).unwrap_or(""),
                "views": sum(&["views"]),
                "window": window(as_of("as_of")),
            });
            if api.model.is_some() {
                body["model"] = locals
                    .iter()
                    .map(|l| &l["model"])
                    .find(|m| !m.is_null())
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                body["model_window"] = window(as_of("model_as_of"));
            }
            ("200 OK", body)
        }
        Request::Breakdown => {
            let group = |key: &str, names: &[&str]| -> serde_json::Map<String, serde_json::Value> {
                names
                    .iter()
                    .map(|n| (n.to_string(), serde_json::json!(sum(&[key, n]))))
                    .collect()
            };
            (
                "200 OK",
                serde_json::json!({
                    "window": window(as_of("as_of")),
                    "views": sum(&["views"]),
                    "watch_ms": sum(&["watch_ms"]),
                    // Every process holds the whole episode total.
                    "views_24h_episodes": locals.iter().filter_map(|l| l["views_24h_episodes"].as_i64()).max().unwrap_or(0),
                    "by_tier": group("by_tier", &TIERS),
                    "by_device": group("by_device", &DEVICES),
                    "by_region": group("by_region", &crate::event::REGIONS),
                }),
            )
        }
        Request::Trending {
            category,
            region,
            k,
        } => {
            let mut titles: Vec<serde_json::Value> = locals
                .iter()
                .flat_map(|l| l["titles"].as_array().cloned().unwrap_or_default())
                .collect();
            let key = |t: &serde_json::Value| {
                (
                    t["value"].as_f64().unwrap_or(0.0),
                    t["content_id"].as_u64().unwrap_or(0),
                )
            };
            titles.sort_by(|a, b| {
                let (va, ia) = key(a);
                let (vb, ib) = key(b);
                vb.total_cmp(&va).then(ia.cmp(&ib))
            });
            titles.truncate(*k);
            for (i, t) in titles.iter_mut().enumerate() {
                t["rank"] = serde_json::json!(i + 1);
            }
            (
                "200 OK",
                serde_json::json!({
                    "category": category,
                    "region": region.map_or("", |r| crate::event::REGIONS[r]),
                    "k": k,
                    "window": window(as_of("as_of")),
                    "titles": titles,
                }),
            )
        }
    }
}

/// The live model of this process, merged over its shards, with episode
/// scores from the episode total.
struct LiveModel {
    as_of: u64,
    rows: Vec<crate::model::NodeRow>,
    total_24h: i64,
}

fn live_model(api: &Api) -> Option<LiveModel> {
    let board = api.model.as_ref()?;
    let shards = board.shards();
    let as_of = shards.values().map(|s| s.as_of).min()?;
    let total_24h = shards.values().map(|s| s.total_24h).max().unwrap_or(0);
    let mut rows: Vec<crate::model::NodeRow> = shards
        .values()
        .flat_map(|s| s.rows.iter().cloned())
        .collect();
    for r in rows.iter_mut() {
        if r.info.map(|i| i.kind) == Some(Kind::Episode) {
            r.score_ppm = crate::model::score_ppm(r.m.views_24h, total_24h);
        }
    }
    rows.sort_unstable_by_key(|r| r.id);
    Some(LiveModel {
        as_of,
        rows,
        total_24h,
    })
}

fn named<T: Copy>(names: &[&str], values: &[T]) -> serde_json::Map<String, serde_json::Value>
where
    serde_json::Value: From<T>,
{
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), serde_json::Value::from(*v)))
        .collect()
}

const TIERS: [&str; 2] = ["free", "paid"];
const DEVICES: [&str; 4] = ["mobile", "tv", "web", "tablet"];

fn row_json(r: &crate::model::NodeRow, api: &Api) -> serde_json::Value {
    serde_json::json!({
        "content_id": r.id,
        "name": api.catalog.get(r.id).map(|t| t.name.as_str()).unwrap_or(""),
        "kind": r.info.map_or("unknown", |i| i.kind.as_str()),
        "parent": r.info.and_then(|i| i.parent),
        "views": r.m.views,
        "watch_ms": r.m.watch_ms,
        "views_24h": r.m.views_24h,
        "score_ppm": r.score_ppm,
        "trend": r.trend(),
        "decay": r.decay,
        "by_tier": named(&TIERS, &r.m.tier),
        "by_device": named(&DEVICES, &r.m.device),
        "by_region": named(&crate::event::REGIONS, &r.m.region),
    })
}
