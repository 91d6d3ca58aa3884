//! `generate` and `catalog`: synthetic events (to a file or a topic) and catalogs.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use popularity::config::JobConfig;
use popularity::core::catalog::Catalog;
use popularity::source::traffic::{GenItem, Generator};

#[derive(Args)]
pub(crate) struct GenerateArgs {
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
pub(crate) struct CatalogArgs {
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

pub(crate) fn generate(args: GenerateArgs) -> Result<()> {
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
pub(crate) fn generate_to_kafka(
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

pub(crate) fn catalog(args: CatalogArgs) -> Result<()> {
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
