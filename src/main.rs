//! The `popularity` command line: run the job, generate events, synthesize a catalog, benchmark.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};

use popularity::config::{JobConfig, SinkKind, SourceKind};
use popularity::core::catalog::Catalog;
use popularity::job::{execute, open_store, Context, DeadLetterTarget};
use popularity::source::traffic::{GenItem, Generator, Popularity};

/// Exact real-time content popularity: sliding view counts, hourly snapshots.
#[derive(Parser)]
#[command(name = "popularity", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job described by a job file (default: the embedded local job).
    Run(RunArgs),
    /// Write generated watch events as JSON lines.
    Generate(GenerateArgs),
    /// Write a synthesized catalog as JSON lines.
    Catalog(CatalogArgs),
    /// Push generated events through the whole dataflow with no I/O and report speed and memory.
    Bench(BenchArgs),
    /// Read a Kafka topic from the beginning with a bare consumer and report the raw rate.
    Consume(ConsumeArgs),
    /// Rank titles of a category from published hourly snapshots (local or S3).
    Rank(RankArgs),
    /// Time a checkpoint of N live (content, pane) entries: write, then find, verify and read back.
    CheckpointBench(CheckpointBenchArgs),
}

#[derive(Args)]
struct CheckpointBenchArgs {
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
struct RankArgs {
    /// Job file whose [sink] and [catalog] to read (default: the embedded local job).
    #[arg(long)]
    job: Option<PathBuf>,
    /// Read this local snapshot directory instead of the job's sink.
    #[arg(long)]
    local: Option<PathBuf>,
    /// Catalog (JSON lines) instead of the job's.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// movie, show, episode, live, clip or channel.
    #[arg(long, default_value = "episode")]
    category: String,
    /// Last hour to include, `YYYY-MM-DDTHH` (default: the newest published).
    #[arg(long)]
    hour: Option<String>,
    /// Hours to combine, ending at --hour (24 for a daily ranking).
    #[arg(long, default_value_t = 1)]
    hours: u64,
    /// Half-life in hours for weighing older hours down (default: no decay).
    #[arg(long)]
    half_life: Option<f64>,
    /// How many rows (0: all).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// table, csv or json.
    #[arg(long, default_value = "table")]
    format: String,
    /// Write here instead of stdout.
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ConsumeArgs {
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

/// Timely's cluster flags, passed through as given.
#[derive(Args, Clone, Debug)]
#[command(disable_help_flag = true)]
struct Cluster {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    workers: usize,
    /// Number of processes.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// Index of this process.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// Hostfile: one host:port per line, one line per process.
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<PathBuf>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl Cluster {
    fn timely_config(&self) -> Result<timely::Config> {
        let mut args = vec![
            "-w".to_string(),
            self.workers.to_string(),
            "-n".to_string(),
            self.processes.to_string(),
            "-p".to_string(),
            self.process.to_string(),
        ];
        if let Some(h) = &self.hostfile {
            args.push("-h".into());
            args.push(h.display().to_string());
        }
        if self.workers == 0 || self.processes == 0 || self.process >= self.processes {
            bail!(
                "need -w ≥ 1, -n ≥ 1 and -p < -n (got -w {} -n {} -p {})",
                self.workers,
                self.processes,
                self.process
            );
        }
        timely::Config::from_args(args.into_iter())
            .map_err(|e| anyhow::anyhow!("cluster flags: {e}"))
    }
}

#[derive(Args)]
#[command(disable_help_flag = true)]
struct RunArgs {
    /// Job file (TOML); without it the embedded local job runs.
    #[arg(long)]
    job: Option<PathBuf>,
    #[command(flatten)]
    cluster: Cluster,
}

#[derive(Args)]
struct GenerateArgs {
    /// Job file whose generator and catalog settings to start from.
    #[arg(long)]
    job: Option<PathBuf>,
    /// Number of events.
    #[arg(long)]
    events: Option<u64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Events per second of wall clock (0: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Share of malformed records.
    #[arg(long)]
    invalid: Option<f64>,
    /// Share of late records.
    #[arg(long)]
    late: Option<f64>,
    /// Output file (default: stdout).
    #[arg(long, short = 'o', conflicts_with = "kafka")]
    out: Option<PathBuf>,
    /// Produce to Kafka at these brokers instead (default rate 20 000 events/minute).
    #[arg(long)]
    kafka: Option<String>,
    /// Kafka topic to produce to.
    #[arg(long, default_value = "watch-events")]
    topic: String,
}

#[derive(Args)]
struct CatalogArgs {
    /// Approximate number of titles.
    #[arg(long, default_value_t = 20_000)]
    titles: usize,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Live events are scheduled within two days after this time (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    start: String,
    /// Output file (default: stdout).
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
}

#[derive(Args)]
#[command(disable_help_flag = true)]
struct BenchArgs {
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
    #[command(flatten)]
    cluster: Cluster,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POPULARITY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        let code = e
            .chain()
            .find_map(|c| c.downcast_ref::<popularity::core::error::Error>())
            .map_or(1, popularity::core::error::Error::exit_code);
        std::process::exit(code);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Generate(args) => generate(args),
        Command::Catalog(args) => catalog(args),
        Command::Bench(args) => bench(args),
        Command::Consume(args) => consume(args),
        Command::Rank(args) => rank(args),
        Command::CheckpointBench(args) => checkpoint_bench(args),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let job = JobConfig::load(args.job.as_deref())?;
    let config = args.cluster.timely_config()?;
    let ctx = Context::from_job(job)?;
    // SIGTERM (as Kubernetes sends) and Ctrl-C: stop reading, checkpoint, exit 0.
    signal_hook::flag::register(signal_hook::consts::SIGTERM, ctx.stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, ctx.stop.clone())?;
    // The hosts of the cluster, for the query API to reach the other processes.
    let hosts: Vec<String> = match &args.cluster.hostfile {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the hostfile {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.rsplit_once(':').map_or(l, |(h, _)| h).to_string())
            .collect(),
        None => Vec::new(),
    };
    if let Some(addr) =
        ctx.serve_metrics_in_cluster(args.cluster.process, args.cluster.processes, &hosts)?
    {
        eprintln!("metrics on http://{addr}/metrics");
    }
    let ctx = Arc::new(ctx);
    let started = Instant::now();
    let stats = execute(config, ctx)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "read {} records in {:.2}s ({:.0}/s): {} views, {} invalid, {} late, {} dead-lettered; {} hours published, {} parts, {} rows",
        stats.read,
        secs,
        stats.read as f64 / secs.max(1e-9),
        stats.views,
        stats.invalid,
        stats.late,
        stats.dead_lettered,
        stats.hours_published,
        stats.parts_written,
        stats.rows_written
    );
    Ok(())
}

fn generate(args: GenerateArgs) -> Result<()> {
    let job = JobConfig::load(args.job.as_deref())?;
    let mut g = job.source.generator.clone();
    if let Some(v) = args.events {
        g.events = v;
    }
    if let Some(v) = args.seed {
        g.seed = v;
    }
    if let Some(v) = args.rate {
        g.rate = v;
    }
    if let Some(v) = args.invalid {
        g.invalid = v;
    }
    if let Some(v) = args.late {
        g.late = v;
    }
    let start = popularity::core::time::parse_rfc3339(&g.start).context("generator start")?;
    let catalog = match &job.catalog.path {
        Some(p) => Catalog::load(p)?,
        None => Catalog::synthesize(job.catalog.titles, job.catalog.seed, start)?,
    };
    let generator = Generator::new(&g, &catalog).map_err(|e| anyhow::anyhow!("generator: {e}"))?;
    if let Some(brokers) = &args.kafka {
        let rate = args.rate.unwrap_or(20_000.0 / 60.0);
        return generate_to_kafka(&generator, g.events, brokers, &args.topic, rate);
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let began = Instant::now();
    let mut line = Vec::with_capacity(256);
    let total = if g.events == 0 { u64::MAX } else { g.events };
    for i in 0..total {
        if g.rate > 0.0 {
            let due = began + std::time::Duration::from_secs_f64(i as f64 / g.rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                out.flush()?;
                std::thread::sleep(wait);
            }
        }
        line.clear();
        match generator.item(i) {
            GenItem::Event(e) => e.encode_into(&mut line),
            GenItem::Malformed(s) => line.extend_from_slice(s.as_bytes()),
        }
        line.push(b'\n');
        if let Err(e) = out.write_all(&line) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    out.flush()?;
    Ok(())
}

/// Produces generated events to Kafka, keyed by user id, with a progress line and a clean stop on Ctrl-C.
fn generate_to_kafka(
    generator: &Generator,
    events: u64,
    brokers: &str,
    topic: &str,
    rate: f64,
) -> Result<()> {
    use std::sync::atomic::AtomicBool;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let kafka = popularity::source::kafka::KafkaConfig {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        ..Default::default()
    };
    let total = if events == 0 { u64::MAX } else { events };
    let records = (0..total).map(|i| match generator.item(i) {
        GenItem::Event(e) => (e.user_id.to_string().into_bytes(), e.to_json().into_bytes()),
        GenItem::Malformed(s) => (b"malformed".to_vec(), s.into_bytes()),
    });
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let done = popularity::source::kafka::produce(&kafka, topic, records, rate, &stop, |p| {
        let line = format!(
            "sent {:>12}  {:>10.0}/s  delivered {:>12}  errors {}",
            p.sent,
            p.sent as f64 / p.elapsed.max(1e-9),
            p.delivered,
            p.failed
        );
        if interactive {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    })?;
    if interactive {
        eprintln!();
    }
    println!(
        "produced {} events to {topic} in {:.2}s ({} delivered, {} failed)",
        done.sent, done.elapsed, done.delivered, done.failed
    );
    if done.failed > 0 {
        bail!("{} events could not be delivered", done.failed);
    }
    Ok(())
}

fn catalog(args: CatalogArgs) -> Result<()> {
    let start =
        popularity::core::time::parse_rfc3339(&args.start).context("--start must be RFC 3339")?;
    let cat = Catalog::synthesize(args.titles, args.seed, start)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    cat.write(&mut out)?;
    out.flush()?;
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
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
fn bench_one(args: &BenchArgs, model: bool) -> Result<(f64, f64)> {
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
    job.metrics.enabled = false; // no endpoint, no live-window copies: the dataflow alone
    job.model.enabled = model;
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

fn consume(args: ConsumeArgs) -> Result<()> {
    let idle = std::time::Duration::from_millis(
        popularity::core::time::parse_duration(&args.idle).map_err(anyhow::Error::msg)? as u64,
    );
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

fn rank(args: RankArgs) -> Result<()> {
    use popularity::rank::{rank, to_csv, to_table, RankQuery};
    let job = JobConfig::load(args.job.as_deref())?;
    let category = popularity::core::catalog::Kind::parse(&args.category).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown category `{}` (movie, show, episode, live, clip, channel)",
            args.category
        )
    })?;
    let end_hour = match &args.hour {
        None => None,
        Some(h) => {
            let (dt, hh) = h
                .split_once('T')
                .ok_or_else(|| anyhow::anyhow!("--hour wants YYYY-MM-DDTHH, got {h}"))?;
            let hh: u32 = hh
                .parse()
                .map_err(|_| anyhow::anyhow!("--hour wants YYYY-MM-DDTHH, got {h}"))?;
            Some(
                popularity::core::time::parse_hour(dt, hh)
                    .ok_or_else(|| anyhow::anyhow!("--hour {h} is not a valid hour"))?,
            )
        }
    };
    let store: Arc<dyn popularity::sink::store::ObjectStore> = match &args.local {
        Some(dir) => Arc::new(popularity::sink::store::LocalStore::new(dir)?),
        None => open_store(&job.sink)?.ok_or_else(|| {
            anyhow::anyhow!("the job has no snapshot store (sink.kind = \"none\")")
        })?,
    };
    let start = popularity::core::time::parse_rfc3339(&job.source.generator.start)
        .context("generator start")?;
    let catalog = match args.catalog.as_ref().or(job.catalog.path.as_ref()) {
        Some(p) => Catalog::load(p)?,
        None => Catalog::synthesize(job.catalog.titles, job.catalog.seed, start)?,
    };
    let query = RankQuery {
        category,
        end_hour,
        hours: args.hours,
        half_life_hours: args.half_life,
        top: args.top,
    };
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let ranking = rank(&*store, &catalog, &query, |i, n| {
        if n > 1 && interactive {
            eprint!("\rreading hour {i}/{n}");
        }
    })?;
    if interactive && ranking.hours_read.len() > 1 {
        eprintln!();
    }
    if !ranking.hours_missing.is_empty() {
        eprintln!(
            "warning: {} of {} hours are not published and were skipped",
            ranking.hours_missing.len(),
            args.hours.max(1)
        );
    }
    let text = match args.format.as_str() {
        "table" => to_table(&ranking),
        "csv" => to_csv(&ranking),
        "json" => serde_json::to_string_pretty(&ranking)? + "\n",
        other => bail!("--format must be table, csv or json, not {other}"),
    };
    match &args.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

fn checkpoint_bench(args: CheckpointBenchArgs) -> Result<()> {
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

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
