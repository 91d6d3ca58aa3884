//! `rank`: titles of a category ranked from published hours.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use popularity::config::JobConfig;
use popularity::core::catalog::Catalog;
use popularity::job::open_store;

#[derive(Args)]
pub(crate) struct RankArgs {
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

pub(crate) fn rank(args: RankArgs) -> Result<()> {
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
