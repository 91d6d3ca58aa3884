//! `bench`, `consume` and `checkpoint-bench`: the speed figures.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use popularity::config::{JobConfig, SinkKind, SourceKind};
use popularity::core::model::Rollup;
use popularity::job::{execute, open_store, Context, DeadLetterTarget};
use popularity::source::traffic::Popularity;

use crate::Cluster;

#[derive(Args)]
pub(crate) struct CheckpointBenchArgs {
    /// Live (content, pane) entries.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Panes they spread over.
    #[arg(long, default_value_t = 60)]
    panes: u64,
    /// Job file whose [sink] store to use (default: a local directory).
    #[arg(long)]
    sink_job: Option<PathBuf>,
    /// Local directory for the default store.
    #[arg(long, default_value = "out/checkpoint-bench")]
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct ConsumeArgs {
    /// Bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic to read.
    #[arg(long, default_value = "watch-events")]
    topic: String,
    /// Stop after this long without a record.
    #[arg(long, default_value = "1s")]
    idle: String,
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub(crate) struct BenchArgs {
    /// Events to push through.
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Distinct content ids.
    #[arg(long, default_value_t = 100_000)]
    ids: u64,
    /// Popularity distribution: uniform or zipf.
    #[arg(long, default_value = "uniform")]
    popularity: String,
    /// Events per second of event time (2000: event time advances 1 ms per 2 events).
    #[arg(long, default_value_t = 2000.0)]
    time_rate: f64,
    /// Write snapshots to this job file's [sink] instead of nowhere.
    #[arg(long)]
    sink_job: Option<PathBuf>,
    /// Which dataflow: `window` (view counts only), `model` (the full
    /// model beside them), or `both`, one after the other in this run.
    #[arg(long, default_value = "both")]
    model: String,
    /// How the model rolls titles up: `routes` or `differential` (a join).
    #[arg(long, default_value = "routes")]
    rollup: String,
    /// Batches the generator runs ahead of each worker, on a thread of its
    /// own (`source.read-ahead`; 0: in the worker).
    #[arg(long, default_value_t = 2)]
    read_ahead: usize,
    #[command(flatten)]
    cluster: Cluster,
}

pub(crate) fn bench(args: BenchArgs) -> Result<()> {
    let modes: &[bool] = match args.model.as_str() {
        "window" => &[false],
        "model" => &[true],
        "both" => &[false, true],
        other => bail!("--model must be window, model or both, not {other}"),
    };
    let mut rates = Vec::new();
    for &model in modes {
        println!(
            "{}",
            if model {
                "== full model (window counts, measures, rollups, scores, rankings)"
            } else {
                "== window only (view counts)"
            }
        );
        rates.push(bench_one(&args, model)?);
    }
    if let [(w_all, w_input), (m_all, m_input)] = rates[..] {
        println!("== model rate as a share of the window rate (same events, same run)");
        println!("whole run       {:.2}", m_all / w_all);
        println!("through input   {:.2}", m_input / w_input);
    }
    Ok(())
}

/// Runs one benchmark; returns events per second over the whole run and
/// through the input (until the dataflow has processed every event; the
/// rest is the windows running out).
pub(crate) fn bench_one(args: &BenchArgs, model: bool) -> Result<(f64, f64)> {
    let mut job = JobConfig::default();
    job.source.kind = SourceKind::Generator;
    job.sink.kind = SinkKind::None;
    let g = &mut job.source.generator;
    g.events = args.events;
    g.ids = Some(args.ids);
    g.popularity = match args.popularity.as_str() {
        "uniform" => Popularity::Uniform,
        "zipf" => Popularity::Zipf,
        other => bail!("--popularity must be uniform or zipf, not {other}"),
    };
    g.time_rate = args.time_rate;
    g.daily_rhythm = false;
    g.mix = [1.0, 0.0, 0.0];
    g.out_of_order = 0.0;
    g.late = 0.0;
    g.invalid = 0.0;
    job.source.batch = 65_536;
    job.source.read_ahead = args.read_ahead;
    job.metrics.enabled = false; // no endpoint, no live-window copies: the dataflow alone
    job.model.enabled = model;
    job.model.rollup = match args.rollup.as_str() {
        "routes" => Rollup::Routes,
        "differential" => Rollup::Differential,
        other => bail!("--rollup must be routes or differential, not {other}"),
    };
    // Every id is a catalog title, so the model resolves and rolls up each one.
    job.catalog.titles = args.ids as usize;
    if let Some(path) = &args.sink_job {
        job.sink = JobConfig::load(Some(path))?.sink;
    }
    job.validate()?;
    let config = args.cluster.timely_config()?;
    let mut ctx = Context::from_job(job)?;
    ctx.dead_letters = DeadLetterTarget::CountOnly;
    let ctx = Arc::new(ctx);
    let started = Instant::now();
    let started_ms = popularity::core::time::now_ms();
    let stats = execute(config, ctx)?;
    let secs = started.elapsed().as_secs_f64();
    println!("events          {}", stats.read);
    println!("seconds         {secs:.3}");
    println!("events/s        {:.0}", stats.read as f64 / secs.max(1e-9));
    let input = if stats.caught_up_ms > 0 {
        (stats.caught_up_ms - started_ms) as f64 / 1000.0
    } else {
        secs
    };
    let input_rate = stats.read as f64 / input.max(1e-9);
    println!(
        "through input   {input:.3} s ({input_rate:.0} events/s); the rest is the windows running out"
    );
    println!(
        "peak RSS        {} MiB",
        peak_rss_kib().map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
    println!(
        "live state peak {} (content, pane) updates",
        stats.live_state_peak
    );
    if stats.parts_written > 0 {
        println!(
            "snapshots       {} hours, {} parts, {} rows, {:.1} MiB, {:.2}s writing parts ({:.1} MiB/s), {} retries",
            stats.hours_published,
            stats.parts_written,
            stats.rows_written,
            stats.bytes_written as f64 / 1048576.0,
            stats.part_write_micros as f64 / 1e6,
            stats.bytes_written as f64 / 1048576.0 / (stats.part_write_micros as f64 / 1e6).max(1e-9),
            stats.store_retries
        );
    }
    Ok((stats.read as f64 / secs.max(1e-9), input_rate))
}

pub(crate) fn consume(args: ConsumeArgs) -> Result<()> {
    let idle = humantime::parse_duration(&args.idle)?;
    let cfg = popularity::source::kafka::KafkaConfig {
        brokers: args.brokers,
        topic: args.topic,
        ..Default::default()
    };
    let (records, bytes, secs) = popularity::source::kafka::consume_all(&cfg, idle)?;
    println!("records         {records}");
    println!("bytes           {bytes}");
    println!("seconds         {secs:.3} (first to last record)");
    println!("records/s       {:.0}", records as f64 / secs.max(1e-9));
    Ok(())
}

pub(crate) fn checkpoint_bench(args: CheckpointBenchArgs) -> Result<()> {
    let store: Arc<dyn popularity::sink::store::ObjectStore> = match &args.sink_job {
        Some(job) => open_store(&JobConfig::load(Some(job))?.sink)?
            .ok_or_else(|| anyhow::anyhow!("that job has no store"))?,
        None => Arc::new(popularity::sink::store::LocalStore::new(&args.dir)?),
    };
    let r = popularity::checkpoint::bench(store, args.entries, args.panes)?;
    println!("entries         {}", r.entries);
    println!(
        "part bytes      {} ({:.1} MiB)",
        r.bytes,
        r.bytes as f64 / 1048576.0
    );
    println!(
        "take seconds    {:.3} (encode + write part)",
        r.take_seconds
    );
    println!("manifest secs   {:.3}", r.complete_seconds);
    println!(
        "load seconds    {:.3} (find, read, verify, decode)",
        r.load_seconds
    );
    Ok(())
}

pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
