//! The `popularity` command line: run the job, generate events, synthesize a catalog, benchmark.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};

use popularity::config::JobConfig;
use popularity::job::{execute, Context};

mod cli;

use cli::{bench, generate, rank};

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
    Generate(generate::GenerateArgs),
    /// Write a synthesized catalog as JSON lines.
    Catalog(generate::CatalogArgs),
    /// Push generated events through the whole dataflow with no I/O and report speed and memory.
    Bench(bench::BenchArgs),
    /// Read a Kafka topic from the beginning with a bare consumer and report the raw rate.
    Consume(bench::ConsumeArgs),
    /// Rank titles of a category from published hourly snapshots (local or S3).
    Rank(rank::RankArgs),
    /// Time a checkpoint of N live (content, pane) entries: write, then find, verify and read back.
    CheckpointBench(bench::CheckpointBenchArgs),
}

/// Timely's cluster flags, passed through as given.
#[derive(Args, Clone, Debug)]
#[command(disable_help_flag = true)]
pub(crate) struct Cluster {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub(crate) workers: usize,
    /// Number of processes.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub(crate) processes: usize,
    /// Index of this process.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub(crate) process: usize,
    /// Hostfile: one host:port per line, one line per process.
    #[arg(short = 'h', long = "hostfile")]
    pub(crate) hostfile: Option<PathBuf>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl Cluster {
    pub(crate) fn timely_config(&self) -> Result<timely::Config> {
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

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POPULARITY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a pod's or a file's log
        // gets plain lines, not escape codes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
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
        Command::Generate(args) => generate::generate(args),
        Command::Catalog(args) => generate::catalog(args),
        Command::Bench(args) => bench::bench(args),
        Command::Consume(args) => bench::consume(args),
        Command::Rank(args) => rank::rank(args),
        Command::CheckpointBench(args) => bench::checkpoint_bench(args),
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
    println!("{}", stats.summary(started.elapsed().as_secs_f64()));
    Ok(())
}
