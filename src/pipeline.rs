//! The driver: wires a source, the dataflow and the sinks together on each
//! worker, and runs the loop that feeds it.
//!
//! Each worker owns a source instance (its partitions), per-partition
//! watermarks, and a differential input. The loop pulls a batch, drops late
//! and bad records into the dead-letter sink, pre-aggregates views by
//! `(content, pane)`, hands them to the dataflow, advances the input to the
//! minimum watermark pane over its partitions, and steps the worker. It
//! stops reading while the dataflow's frontier trails the input by more
//! than `window.max-lead-panes`, which bounds the memory of in-flight panes.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::input::{Input, InputSession};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::worker::Worker;

use crate::catalog::Catalog;
use crate::checkpoint::{
    fact_key, fact_of, Checkpointer, Checkpoints, ClockState, HeldRecord, PartitionLedger, Writer,
};
use crate::clock::{ClockRule, Held, PartitionClock, Verdict};
use crate::config::{JobConfig, SourceKind};
use crate::dataflow::model::{model_tables, ModelBoard};
use crate::dataflow::{hourly_tables, windowed_views};
use crate::error::{Error, FaultSlot, Result};
use crate::event::WatchEvent;
use crate::event::{ContentId, EventType, Validation};
use crate::generator::Generator;
use crate::model::feed::CatalogFeed;
use crate::model::{cell_of, CatalogEntry, Cell, Delta, Measures, ModelSpec, Obs};
use crate::sink::deadletter::{DeadLetter, DeadLetterSink, LocalDeadLetters, MemoryDeadLetters};
use crate::sink::snapshot::{publish_hours, write_model_parts, write_parts, write_trending};
use crate::sink::store::ObjectStore;
use crate::source::file::FileSource;
use crate::source::generator::GeneratorSource;
use crate::source::kafka::{KafkaDeadLetters, KafkaSource, ProgressBoard};
use crate::source::{Batch, PartitionId, Poll, Source};
use crate::stats::{Stats, StatsSnapshot};
use crate::time::{rfc3339, Millis, Pane, WindowSpec};

/// A fast, deterministic hasher for the pre-aggregation maps (it hashes
/// each integer of a key in one step).
pub use rustc_hash::FxHasher;

/// Pre-aggregated views of one batch, by partition (for the checkpoint ledger).
pub type PaneCounts = HashMap<(PartitionId, ContentId, Pane), i64, BuildHasherDefault<FxHasher>>;

/// Where dead letters go.
#[derive(Clone, Debug)]
pub enum DeadLetterTarget {
    /// One JSON-lines file per worker in this directory.
    Local(PathBuf),
    /// Only counted (benchmarks).
    CountOnly,
    /// The Kafka dead-letter topic of the source.
    Kafka,
}

/// Everything a worker needs, shared by the workers of a process.
pub struct Context {
    /// The job.
    pub job: JobConfig,
    /// Window geometry.
    pub window: WindowSpec,
    /// The rule of every partition's clock (lateness, corroborated jumps).
    pub clock: ClockRule,
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// The generator, when the source is the generator.
    pub generator: Option<Arc<Generator>>,
    /// The snapshot store; `None` writes nothing.
    pub store: Option<Arc<dyn ObjectStore>>,
    /// Dead-letter destination.
    pub dead_letters: DeadLetterTarget,
    /// Counters.
    pub stats: Arc<Stats>,
    /// First fatal error raised inside an operator.
    pub fault: Arc<FaultSlot>,
    /// Offsets and high watermarks of the Kafka partitions read by this process.
    pub kafka_progress: ProgressBoard,
    /// Set on SIGTERM/SIGINT: stop reading, checkpoint, exit.
    pub stop: Arc<AtomicBool>,
    /// Set once the workers are processing (restored and reading): `/readyz`.
    pub ready: Arc<AtomicBool>,
    /// The live window of this process's workers, for the query API.
    pub live: Arc<crate::dataflow::live::LiveBoard>,
    /// The model's settings, when the job maintains the model.
    pub model: Option<ModelSpec>,
    /// The live model of this process's workers, for the query API.
    pub model_live: Arc<ModelBoard>,
    /// A test hook: worker 0 stops stepping this long after it starts
    /// (until the job is stopped), as a hung worker would; `/healthz` must notice.
    pub stall_after: Option<Duration>,
}

impl Context {
    /// Resolves a job: loads or synthesizes the catalog, builds the generator, opens the store.
    pub fn from_job(job: JobConfig) -> Result<Context> {
        let window = job.window.spec()?;
        let clock = job.window.clock_rule()?;
        let start = crate::time::parse_rfc3339(&job.source.generator.start).ok_or_else(|| {
            Error::Config(format!(
                "source.generator.start `{}` is not RFC 3339",
                job.source.generator.start
            ))
        })?;
        let catalog = match &job.catalog.path {
            Some(p) => Catalog::load(p)?,
            None => Catalog::synthesize(job.catalog.titles, job.catalog.seed, start)?,
        };
        let generator = match job.source.kind {
            SourceKind::Generator => Some(Arc::new(
                Generator::new(&job.source.generator, &catalog)
                    .map_err(|e| Error::Config(format!("source.generator: {e}")))?,
            )),
            SourceKind::File | SourceKind::Kafka => None,
        };
        let stats = Arc::new(Stats::default());
        let store: Option<Arc<dyn ObjectStore>> = job.sink.open()?.map(|s| {
            Arc::new(crate::sink::measured::Measured::new(s, stats.clone())) as Arc<dyn ObjectStore>
        });
        let model = if job.model.enabled {
            Some(
                job.model
                    .spec(window.slide_ms, window.panes())
                    .map_err(Error::Config)?,
            )
        } else {
            None
        };
        let dead_letters = match job.source.kind {
            SourceKind::Kafka => DeadLetterTarget::Kafka,
            _ => DeadLetterTarget::Local(job.dead_letter.path.clone()),
        };
        Ok(Context {
            job,
            window,
            clock,
            catalog: Arc::new(catalog),
            generator,
            store,
            dead_letters,
            stats,
            fault: Arc::new(FaultSlot::default()),
            kafka_progress: ProgressBoard::default(),
            stop: Arc::new(AtomicBool::new(false)),
            ready: Arc::new(AtomicBool::new(false)),
            live: Arc::default(),
            model,
            model_live: Arc::default(),
            stall_after: None,
        })
    }

    /// Starts the metrics endpoint for process `process` if the job wants one.
    pub fn serve_metrics(
        &self,
        process: usize,
        processes: usize,
    ) -> Result<Option<std::net::SocketAddr>> {
        self.serve_metrics_in_cluster(process, processes, &[])
    }

    /// As [`Context::serve_metrics`], for a process of a cluster whose
    /// processes run on `hosts` (the hostfile's hosts, by index): the query
    /// API then merges every process's share of an answer.
    pub fn serve_metrics_in_cluster(
        &self,
        process: usize,
        processes: usize,
        hosts: &[String],
    ) -> Result<Option<std::net::SocketAddr>> {
        if !self.job.metrics.enabled {
            return Ok(None);
        }
        let addr = self.job.metrics.address(process)?;
        let mut peers = Vec::new();
        if hosts.len() == processes {
            for (i, host) in hosts.iter().enumerate() {
                let own = self.job.metrics.address(i)?;
                let port = own.rsplit_once(':').map_or("", |(_, p)| p);
                if port != "0" {
                    peers.push(format!("{host}:{port}"));
                }
            }
        }
        let api = crate::serve::Api {
            live: self.live.clone(),
            catalog: self.catalog.clone(),
            window: self.window,
            processes,
            model: self.model.map(|_| self.model_live.clone()),
            process,
            answers: Default::default(),
        };
        let served = crate::serve::Served {
            stats: self.stats.clone(),
            board: self.kafka_progress.clone(),
            ready: self.ready.clone(),
            peers,
        };
        let limits = self.job.metrics.limits()?;
        crate::serve::serve(&addr, process, served, api, limits).map(Some)
    }

    /// True if this job takes checkpoints (a resumable source and a store).
    pub fn checkpointing(&self) -> bool {
        self.job.checkpoint.enabled
            && self.job.source.kind == SourceKind::Kafka
            && self.store.is_some()
    }

    fn open_source(
        &self,
        index: usize,
        peers: usize,
        offsets: &BTreeMap<PartitionId, i64>,
    ) -> Result<(Box<dyn Source>, String)> {
        let limits = Validation {
            now_ms: crate::time::now_ms(),
            max_future_ms: self.job.source.max_future_ms()?,
        };
        Ok(match self.job.source.kind {
            SourceKind::Generator => {
                let generator = self.generator.clone().ok_or_else(|| {
                    Error::Internal("generator source without a generator".into())
                })?;
                let g = &self.job.source.generator;
                (
                    Box::new(GeneratorSource::new(
                        generator,
                        g.partitions,
                        index,
                        peers,
                        g.events,
                        g.rate,
                        limits,
                    )),
                    "generator".into(),
                )
            }
            SourceKind::File => (
                Box::new(FileSource::open(
                    &self.job.source.file.path,
                    self.job.source.file.partitions,
                    index,
                    peers,
                    limits,
                )?),
                "file".into(),
            ),
            SourceKind::Kafka => {
                let k = &self.job.source.kafka;
                let source = KafkaSource::open(
                    k,
                    &self.job.job.name,
                    index,
                    peers,
                    offsets,
                    limits,
                    self.kafka_progress.clone(),
                )?;
                (Box::new(source), format!("kafka:{}", k.topic))
            }
        })
    }
}

/// Runs the job on the workers described by `config` and returns this process's counters.
pub fn execute(config: timely::Config, ctx: Arc<Context>) -> Result<StatsSnapshot> {
    let shared = ctx.clone();
    // Processes of a cluster block until every peer has connected. A peer
    // that never comes up (it failed to start, its port was taken) would
    // leave this one waiting forever: give up after `job.connect-timeout`.
    let formed = Arc::new(AtomicBool::new(false));
    let cluster = matches!(
        config.communication,
        timely::CommunicationConfig::Cluster { .. }
    );
    if cluster {
        let formed = formed.clone();
        let limit = Duration::from_millis(ctx.job.job.connect_timeout_ms()? as u64);
        std::thread::spawn(move || {
            let began = Instant::now();
            while began.elapsed() < limit {
                if formed.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !formed.load(Ordering::Acquire) {
                eprintln!(
                    "error: the cluster did not form within {limit:?} (job.connect-timeout): \
                     a peer process is down or unreachable"
                );
                std::process::exit(3);
            }
        });
    }
    let writer = match (ctx.checkpointing(), &ctx.store) {
        (true, Some(store)) => Some(Writer::spawn(
            store.clone(),
            &ctx.job.job.name,
            ctx.job.checkpoint.keep,
            ctx.stats.clone(),
        )?),
        _ => None,
    };
    let workers_writer = writer.clone();
    if cluster {
        stop_when_a_peer_goes(ctx.fault.clone());
    }
    let guards = timely::execute(config, move |worker| {
        formed.store(true, Ordering::Release);
        let result = run_worker(worker, &shared, workers_writer.clone());
        if let Err(e) = &result {
            // Let the other workers of this process stop too.
            shared.fault.set(e);
            if cluster {
                // Leaving the closure would let timely tell the peers this
                // process shut down cleanly, and they would wait for it
                // forever; ending here breaks the connections, so they stop too.
                eprintln!("error: {e}");
                std::process::exit(e.exit_code());
            }
        }
        result
    })
    .map_err(|e| Error::Config(format!("starting workers: {e}")))?;
    let mut outcome = Ok(());
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            // The first fault: every failed worker reports the same one.
            Ok(Err(e)) => outcome = outcome.and(Err(e)),
            Err(e) => outcome = outcome.and(Err(Error::Internal(format!("worker panicked: {e}")))),
        }
    }
    if let Some(writer) = writer {
        // The last manifest of a finished source, within the stop bound.
        writer.finish(ctx.job.checkpoint.stop_limit()?);
    }
    outcome.map(|()| ctx.stats.snapshot())
}

/// A peer process that goes away shows up only as a panic of timely's
/// network threads, which the workers never see: they would wait for the
/// peer forever. The panic becomes this process's fault, so it stops too
/// (and, restarted, resumes from the last checkpoint with its peers).
fn stop_when_a_peer_goes(fault: Arc<FaultSlot>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let network = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("timely:send") || n.starts_with("timely:recv"));
        if network {
            let what = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("no reason given");
            fault.set(&Error::External {
                system: "cluster",
                message: format!(
                    "the connection to a peer process broke ({what}); stopping this process too"
                ),
                retryable: true,
            });
        }
    }));
}

/// The error of a stop whose final checkpoint was not written: the
/// previous checkpoint stands, and the exit status says so.
fn final_checkpoint_failed(id: u64, limit: Duration) -> Error {
    Error::External {
        system: "object store",
        message: format!(
            "the final checkpoint {id} was not written within checkpoint.stop-timeout \
             ({limit:?}); the previous checkpoint stands and a restart resumes from it"
        ),
        retryable: true,
    }
}

/// One worker: restore, build the dataflow, open the source, drive it;
/// `writer` writes its checkpoint parts, when the job checkpoints.
pub fn run_worker(worker: &mut Worker, ctx: &Context, writer: Option<Arc<Writer>>) -> Result<()> {
    let (index, peers) = (worker.index(), worker.peers());
    let _span = tracing::info_span!("worker", index, peers).entered();
    let began = Instant::now();
    let restore = restore_state(ctx, index, peers)?;
    let dataflow = worker.next_dataflow_index();
    let (mut input, mut restored, model_inputs, probe) = worker.dataflow::<Pane, _, _>(|scope| {
        let (input, views) = scope.new_collection::<ContentId, i64>();
        // Windows as of the checkpoint come back through their own input.
        let (restored, carried) = scope.new_collection::<ContentId, i64>();
        let model = ctx.model.map(|spec| {
            let (facts_in, facts) = scope.new_collection::<(ContentId, Cell), Obs>();
            let (carry_in, carried) = scope.new_collection::<ContentId, Measures>();
            let (catalog_in, catalog) = scope.new_collection::<CatalogEntry, i64>();
            let tables = model_tables(
                facts,
                carried,
                catalog,
                ctx.window,
                spec,
                ctx.stats.clone(),
                (
                    ctx.job.metrics.enabled.then(|| ctx.model_live.clone()),
                    ctx.job.metrics.enabled.then(|| ctx.live.clone()),
                ),
            );
            ((facts_in, carry_in, catalog_in), tables)
        });
        // With the model, its title stage gives the window counts; without,
        // the window of views does.
        let (model_inputs, model_hours, hours) = match model {
            Some((i, (h, views))) => (Some(i), Some(h), views),
            None => {
                let windowed = windowed_views(views, &ctx.window).concat(carried);
                let hours = hourly_tables(
                    windowed,
                    ctx.window,
                    ctx.stats.clone(),
                    ctx.job.metrics.enabled.then(|| ctx.live.clone()),
                );
                (None, None, hours)
            }
        };
        let probe = match &ctx.store {
            Some(store) => {
                let mut parts = write_parts(
                    hours,
                    store.clone(),
                    ctx.window,
                    ctx.stats.clone(),
                    ctx.fault.clone(),
                );
                let mut tables = vec![vec![crate::sink::snapshot::TITLES]];
                if let (Some(h), Some(spec)) = (model_hours, ctx.model) {
                    use timely::dataflow::operators::Concat;
                    let node_parts = write_model_parts(
                        h.clone(),
                        store.clone(),
                        ctx.window,
                        ctx.stats.clone(),
                        ctx.fault.clone(),
                    );
                    let top_parts = write_trending(
                        h,
                        store.clone(),
                        ctx.window,
                        spec.top_k,
                        ctx.stats.clone(),
                        ctx.fault.clone(),
                    );
                    parts = parts.concat(node_parts).concat(top_parts);
                    tables.push(crate::sink::tables::MODEL_TABLES.to_vec());
                }
                publish_hours(
                    parts,
                    store.clone(),
                    ctx.window,
                    ctx.stats.clone(),
                    ctx.fault.clone(),
                    tables,
                )
                .probe()
                .0
            }
            None => {
                let (probe, _) = hours.probe();
                if let Some(h) = model_hours {
                    h.probe_with(&probe);
                }
                probe
            }
        };
        (input, restored, model_inputs, probe)
    });
    let offsets: BTreeMap<PartitionId, i64> = restore
        .ledgers
        .iter()
        .map(|(p, l)| (*p, l.next_offset))
        .collect();
    let (source, source_name) = ctx.open_source(index, peers, &offsets)?;
    let mut model = match (model_inputs, ctx.model) {
        (Some((facts, carry, mut catalog)), Some(spec)) => {
            if let Some(time) = restore.time {
                catalog.advance_to(time);
            }
            // The catalog enters at the start, spread over the workers.
            for (i, t) in ctx.catalog.titles.iter().enumerate() {
                if i % peers == index {
                    catalog.update(crate::model::entry(t), 1);
                }
            }
            catalog.flush();
            let feed = if index == 0 {
                CatalogFeed::open(&ctx.catalog, &ctx.job)?
            } else {
                None
            };
            Some(ModelFeed {
                spec,
                facts,
                carry: Some(carry),
                catalog,
                feed,
                panes: Combiner::new(13),
                drain_until: None,
            })
        }
        _ => None,
    };
    let mut carry = None;
    if let Some(time) = restore.time {
        input.advance_to(time);
        restored.advance_to(time);
        if let Some(m) = model.as_mut() {
            m.facts.advance_to(time);
            if let Some(c) = m.carry.as_mut() {
                c.advance_to(time);
            }
        }
        let mut facts: HashMap<(ContentId, Pane, Cell), Obs> = HashMap::new();
        for ledger in restore.ledgers.values() {
            for (&pane, counts) in &ledger.panes {
                for (&content, &n) in counts {
                    if let Some((id, cell, watch)) = fact_of(content) {
                        let obs = facts.entry((id, pane, cell)).or_default();
                        if watch {
                            obs.watch_ms += n;
                        } else {
                            obs.views += n;
                        }
                        continue;
                    }
                    if model.is_some() {
                        // The model's input carries the views (a checkpoint taken
                        // with the model has no others).
                        continue;
                    }
                    feed(
                        &mut input,
                        &mut restored,
                        time,
                        ctx.window.panes(),
                        content,
                        pane,
                        n,
                    );
                }
            }
        }
        if let Some(m) = model.as_mut() {
            for ((id, pane, cell), obs) in facts {
                m.feed(ctx.window.panes(), time, (id, cell), pane, obs);
            }
            m.flush();
        }
        input.flush();
        restored.flush();
        carry = Some((restored, time));
        tracing::info!(took = ?began.elapsed(), "checkpoint loaded and re-inserted");
    } else {
        drop(restored);
        if let Some(m) = model.as_mut() {
            m.carry = None;
        }
    }
    let dead: Box<dyn DeadLetterSink> = match &ctx.dead_letters {
        DeadLetterTarget::Local(dir) => Box::new(LocalDeadLetters::open(dir, index)?),
        DeadLetterTarget::CountOnly => Box::new(MemoryDeadLetters {
            count_only: true,
            ..Default::default()
        }),
        DeadLetterTarget::Kafka => Box::new(KafkaDeadLetters::open(
            &ctx.job.source.kafka,
            &ctx.job.dead_letter.path,
            index,
        )?),
    };
    let mut driver = Driver::new(ctx, source, source_name, dead);
    driver.carry = carry;
    driver.model = model;
    ctx.ready.store(true, Ordering::Relaxed);
    for (p, l) in &restore.ledgers {
        driver.marks.insert(*p, restored_clock(ctx, l)?);
    }
    if let Some(writer) = writer {
        let interval = crate::time::parse_duration(&ctx.job.checkpoint.interval)
            .map_err(Error::Config)?
            .max(1) as u64;
        let mut cp = Checkpointer::new(
            writer,
            index,
            peers,
            interval,
            ctx.model.map_or(ctx.window.panes(), |m| {
                m.score_panes.max(ctx.window.panes())
            }),
        );
        cp.ledgers = restore.ledgers;
        if let (Some(id), Some(time)) = (restore.id, restore.time) {
            cp.restored(id, time);
        }
        driver.checkpointer = Some(cp);
    }
    let outcome = driver.drive(worker, input, &probe);
    // Only a source that ended lets the dataflow run out. A stop is not the
    // end of the stream (the closed input would run the frontier out and
    // publish unfinished hours), and after a fault the dataflow may never
    // complete (a failed hour holds its capability): drop it in both cases.
    if !matches!(outcome, Ok(false)) {
        worker.drop_dataflow(dataflow);
    }
    outcome.map(|_| ())
}

/// Feeds one pre-aggregated count. After a restore from a checkpoint taken at
/// time `time`, a pane before it enters the window at `time` (through the
/// carry input, whose capability holds the frontier there) and leaves a
/// window after the pane as usual: windows ending at or after `time` are
/// exactly what they were, and no hour before it is redone.
fn feed(
    input: &mut InputSession<Pane, ContentId, i64>,
    carry: &mut InputSession<Pane, ContentId, i64>,
    time: Pane,
    width: u64,
    content: ContentId,
    pane: Pane,
    n: i64,
) {
    if pane >= time {
        input.update_at(content, pane, n);
    } else if pane + width > time {
        carry.update_at(content, time, n);
        carry.update_at(content, pane + width, -n);
    }
}

/// The model's input of one batch: views and watch time by partition,
/// title, pane and cell.
type ModelKey = (PartitionId, ContentId, Pane, Cell);

/// Sums values by key in a small direct-mapped table that stays in the
/// processor's cache: a key meets its earlier updates while it is hot, and
/// an update whose place another key holds pushes that key's sum out. What
/// comes out is summed per key only in part (a key may come out more than
/// once); every receiver sums again, so the table saves work and changes no
/// result. A full hash map of a batch's keys is larger than the cache, and
/// most of the model's keys are met once per batch.
pub struct Combiner<K, V> {
    table: Vec<Option<(K, V)>>,
    bits: u32,
    /// What has left the table, in order.
    pub out: Vec<(K, V)>,
}

impl<K: std::hash::Hash + Eq + Copy, V: Copy + std::ops::AddAssign> Combiner<K, V> {
    /// A table of `2^bits` places.
    pub fn new(bits: u32) -> Self {
        Combiner {
            table: vec![None; 1 << bits],
            bits,
            out: Vec::new(),
        }
    }

    /// Adds `v` to the sum of `k`.
    pub fn add(&mut self, k: K, v: V) {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<FxHasher>::default().hash_one(k);
        let place = &mut self.table[(h >> (64 - self.bits)) as usize];
        match place {
            Some((key, sum)) if *key == k => *sum += v,
            Some(held) => self.out.push(std::mem::replace(held, (k, v))),
            None => *place = Some((k, v)),
        }
    }

    /// Moves every sum still in the table out.
    pub fn flush(&mut self) {
        for place in self.table.iter_mut() {
            if let Some(held) = place.take() {
                self.out.push(held);
            }
        }
    }
}

/// The model's inputs on one worker.
struct ModelFeed {
    spec: ModelSpec,
    facts: InputSession<Pane, (ContentId, Cell), Obs>,
    /// After a restore: windows as of the checkpoint (as for the views).
    carry: Option<InputSession<Pane, ContentId, Measures>>,
    catalog: InputSession<Pane, CatalogEntry, i64>,
    /// Catalog changes at run time (worker 0 only).
    feed: Option<CatalogFeed>,
    panes: Combiner<ModelKey, Obs>,
    /// After the source has finished: the pane up to which to step the inputs.
    drain_until: Option<Pane>,
}

impl ModelFeed {
    /// Feeds one title's views and watch time of one cell and pane; before
    /// the restore time `time`, what is still inside the windows enters
    /// through the carry.
    fn feed(&mut self, width: u64, time: Pane, key: (ContentId, Cell), pane: Pane, obs: Obs) {
        use differential_dataflow::difference::Abelian;
        let (id, cell) = key;
        match self.carry.as_mut() {
            Some(carry) if pane < time => {
                let mut m = Measures::default();
                Delta::Cell {
                    cell,
                    obs,
                    score: true,
                }
                .apply(&mut m, true);
                for (part, w) in [
                    (m.window_part(), width),
                    (m.score_part(), self.spec.score_panes),
                ] {
                    if pane + w > time && !part.is_zero() {
                        let mut gone = part;
                        gone.negate();
                        carry.update_at(id, time, part);
                        carry.update_at(id, pane + w, gone);
                    }
                }
            }
            _ => self.facts.update_at(key, pane, obs),
        }
    }

    fn advance(&mut self, t: Pane) {
        self.facts.advance_to(t);
        self.catalog.advance_to(t);
    }

    fn flush(&mut self) {
        self.facts.flush();
        self.catalog.flush();
        if let Some(c) = self.carry.as_mut() {
            c.flush();
        }
    }
}

/// What a worker restores: the checkpoint time and its partitions' ledgers.
#[derive(Default)]
struct Restore {
    id: Option<u64>,
    time: Option<Pane>,
    ledgers: BTreeMap<PartitionId, PartitionLedger>,
}

fn restore_state(ctx: &Context, index: usize, peers: usize) -> Result<Restore> {
    let (true, Some(store)) = (ctx.checkpointing(), &ctx.store) else {
        return Ok(Restore::default());
    };
    let Some((manifest, ledgers)) = Checkpoints::new(&**store, &ctx.job.job.name).latest_valid()?
    else {
        return Ok(Restore::default());
    };
    // Partition p belongs to worker p mod peers, whatever the layout that wrote the checkpoint.
    let mine: BTreeMap<PartitionId, PartitionLedger> = ledgers
        .into_iter()
        .filter(|(p, _)| *p as usize % peers == index)
        .collect();
    tracing::info!(checkpoint = manifest.id, time = manifest.time, partitions = ?mine.keys().collect::<Vec<_>>(), "restoring");
    Stats::add(
        &ctx.stats.restored_entries,
        mine.values().map(|l| l.entries() as u64).sum(),
    );
    Ok(Restore {
        id: Some(manifest.id),
        time: Some(manifest.time),
        ledgers: mine,
    })
}

/// A partition's clock in the driver: held records keep their event and position.
type Clock = PartitionClock<(WatchEvent, u64)>;
/// A verdict on a held record.
type Decided = ((WatchEvent, u64), Millis, Verdict);

/// What a checkpoint keeps of a partition's clock.
fn clock_state(c: &Clock) -> ClockState {
    ClockState {
        base: c.base(),
        seq: c.seq(),
        held: c
            .held()
            .map(|h| HeldRecord {
                time: h.time,
                seq: h.seq,
                position: h.item.1,
                raw: h.item.0.to_json().into_bytes(),
            })
            .collect(),
    }
}

/// A partition's clock as a checkpoint left it.
fn restored_clock(ctx: &Context, l: &PartitionLedger) -> Result<Clock> {
    // Held records passed validation when they were read; only decode them.
    let limits = Validation {
        now_ms: 0,
        max_future_ms: Millis::MAX / 2,
    };
    let held = l
        .clock
        .held
        .iter()
        .map(|h| {
            let event = WatchEvent::decode(&h.raw, &limits).map_err(|e| {
                Error::Input(format!("checkpoint: a held record does not decode: {e}"))
            })?;
            Ok(Held {
                time: h.time,
                seq: h.seq,
                item: (event, h.position),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PartitionClock::restored(
        ctx.clock,
        ctx.window,
        l.clock.base,
        l.clock.seq,
        held,
    ))
}

/// A duration for people: `95 s`, `3 h 0 min`.
fn span(ms: Millis) -> String {
    let s = ms / 1000;
    if s < 120 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if s < 7200 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

/// The per-worker feeding loop and its state.
struct Driver<'a> {
    ctx: &'a Context,
    source: Box<dyn Source>,
    source_name: String,
    dead: Box<dyn DeadLetterSink>,
    /// Each partition's clock ([`crate::clock`]): its watermark and held records.
    marks: BTreeMap<PartitionId, Clock>,
    /// Verdicts on held records, reused between batches.
    decided: Vec<Decided>,
    /// Views accepted and not yet added to the counter.
    views: u64,
    batch: Batch,
    panes: PaneCounts,
    /// Dead letters written and not yet flushed: the sink is served in the
    /// background and flushed (which blocks) only when the source finishes.
    dead_dirty: bool,
    last_dead_flush: Instant,
    /// Checkpointing state, when the job checkpoints.
    checkpointer: Option<Checkpointer>,
    /// After a restore: the input for panes before the checkpoint time, and that time.
    /// Dropped once every partition's watermark has passed it.
    carry: Option<(InputSession<Pane, ContentId, i64>, Pane)>,
    /// The model's inputs, when the job maintains the model.
    model: Option<ModelFeed>,
    /// One past the latest pane fed; once the source has finished, the
    /// frontier passing it means every event is through the dataflow.
    fed_until: Pane,
    source_done: bool,
}

impl<'a> Driver<'a> {
    fn new(
        ctx: &'a Context,
        source: Box<dyn Source>,
        source_name: String,
        dead: Box<dyn DeadLetterSink>,
    ) -> Self {
        let marks = source
            .partitions()
            .into_iter()
            .map(|p| (p, PartitionClock::new(ctx.clock, ctx.window)))
            .collect();
        Driver {
            ctx,
            source,
            source_name,
            dead,
            marks,
            decided: Vec::new(),
            views: 0,
            batch: Batch::default(),
            panes: PaneCounts::default(),
            dead_dirty: false,
            last_dead_flush: Instant::now(),
            checkpointer: None,
            carry: None,
            model: None,
            fed_until: 0,
            source_done: false,
        }
    }

    /// Feeds the dataflow until the source is done and the frontier is empty
    /// (returns `false`), or until a stop is requested (returns `true`).
    fn drive(
        &mut self,
        worker: &mut Worker,
        input: InputSession<Pane, ContentId, i64>,
        probe: &ProbeHandle<Pane>,
    ) -> Result<bool> {
        let mut input = Some(input);
        let max_lead = self.ctx.job.window.max_lead_panes;
        let batch_size = self.ctx.job.source.batch;
        let started = Instant::now();
        // On a stop request: the id of the final checkpoint and when we gave up waiting for it.
        let mut stopping: Option<(u64, Instant)> = None;
        let steps = Stepping(self.ctx.stats.steps.register(worker.index()));
        loop {
            steps.0.store(crate::time::now_ms(), Ordering::Relaxed);
            if let Some(fault) = self.ctx.fault.get() {
                return Err(fault);
            }
            self.stall_for_test(worker.index(), started);
            let mut idle = false;
            if self.dead_dirty && self.last_dead_flush.elapsed() >= Duration::from_millis(200) {
                self.dead.poll()?;
                self.last_dead_flush = Instant::now();
            }
            let frontier = probe.with_frontier(|f| f.first().copied());
            if self.source_done && !probe.less_than(&self.fed_until) {
                // What follows is only the windows running out.
                self.source_done = false;
                self.ctx
                    .stats
                    .caught_up_ms
                    .fetch_max(crate::time::now_ms(), Ordering::Relaxed);
            }
            if let Some(f) = frontier {
                self.ctx
                    .stats
                    .frontier_ms
                    .store(self.ctx.window.pane_start(f), Ordering::Relaxed);
            }
            if let (Some(cp), 0) = (self.checkpointer.as_ref(), worker.index()) {
                cp.writer().set_frontier(frontier);
            }
            if stopping.is_none() && self.ctx.stop.load(Ordering::Relaxed) {
                self.dead.flush()?;
                match self.checkpointer.as_mut() {
                    Some(cp) => {
                        let id = cp.final_id(crate::time::now_ms() as u64);
                        tracing::info!(
                            checkpoint = id,
                            "stop requested: taking a final checkpoint"
                        );
                        let limit = self.ctx.job.checkpoint.stop_limit()?;
                        Self::checkpoint(
                            &self.ctx.stats,
                            cp,
                            &*self.source,
                            &self.marks,
                            id,
                            frontier,
                            Some(limit),
                        )?;
                        cp.writer().wait_for(id);
                        stopping = Some((id, Instant::now()));
                    }
                    None => return Ok(true),
                }
            }
            if let Some((id, since)) = stopping {
                // Keep stepping (the frontier must pass the checkpoint time) until it is complete.
                if let Some(cp) = self.checkpointer.as_ref() {
                    if cp.writer().is_complete(id) {
                        tracing::info!(checkpoint = id, "final checkpoint complete; stopping");
                        return Ok(true);
                    }
                    let limit = self.ctx.job.checkpoint.stop_limit()?;
                    if cp.writer().failed(id) || since.elapsed() > limit {
                        return Err(final_checkpoint_failed(id, limit));
                    }
                }
                worker.step_or_park(Some(Duration::from_millis(5)));
                continue;
            }
            if let Some(cp) = self.checkpointer.as_mut() {
                if let (Some(id), Some(f)) = (cp.due(crate::time::now_ms() as u64), frontier) {
                    // Letters of records before the checkpoint's offsets are
                    // acknowledged (or spooled) before the offsets are recorded.
                    self.dead.flush()?;
                    Self::checkpoint(
                        &self.ctx.stats,
                        cp,
                        &*self.source,
                        &self.marks,
                        id,
                        Some(f),
                        None,
                    )?;
                }
            }
            if let Some(session) = input.as_mut() {
                let behind = probe.less_than(&session.time().saturating_sub(max_lead));
                if behind {
                    // Wait for the slowest worker; parking wakes on its messages.
                    idle = true;
                } else {
                    self.batch.clear();
                    match self.source.poll(&mut self.batch, batch_size)? {
                        Poll::Data => self.ingest(session)?,
                        Poll::Idle => idle = true,
                        Poll::Finished(p) => self.finish_partition(session, p)?,
                    }
                    if self.marks.is_empty() {
                        // Every partition is done: closing the input lets the frontier run out.
                        self.dead.flush()?;
                        let until = *session.time();
                        self.fed_until = self.fed_until.max(until);
                        self.source_done = true;
                        input = None;
                        self.carry = None;
                        if let Some(m) = self.model.as_mut() {
                            m.carry = None;
                            // Walk the model's inputs through the score window
                            // pane by pane, so what leaves it leaves in order.
                            m.drain_until = Some(until + m.spec.score_panes + 1);
                        }
                        tracing::debug!(elapsed = ?started.elapsed(), "source finished");
                    } else {
                        // Idle partitions stop holding the input back; if all are idle, nothing moves.
                        self.start_idle_clocks(session)?;
                        let low = self
                            .marks
                            .iter()
                            .filter(|(p, _)| !self.source.is_idle(**p))
                            .map(|(_, w)| w.pane())
                            .min()
                            .unwrap_or(*session.time());
                        // Read the partition that trails next, so a worker's partitions advance together.
                        if let Some((p, _)) = self.marks.iter().min_by_key(|(_, w)| w.pane()) {
                            self.source.focus(*p);
                        }
                        self.catalog_changes(*session.time())?;
                        if low > *session.time() {
                            session.advance_to(low);
                            if let Some(m) = self.model.as_mut() {
                                m.advance(low);
                            }
                            if let Ok(mut w) = self.ctx.stats.worker_watermarks.lock() {
                                w.insert(worker.index(), self.ctx.window.pane_start(low));
                            }
                        }
                        session.flush();
                        if let Some(m) = self.model.as_mut() {
                            m.flush();
                        }
                        if let Some((carry, time)) = self.carry.as_mut() {
                            carry.flush();
                            if self.marks.values().all(|w| w.pane() >= *time) {
                                self.carry = None;
                                if let Some(m) = self.model.as_mut() {
                                    m.carry = None;
                                }
                                tracing::info!(after = ?started.elapsed(), "every partition is past the checkpoint time");
                            }
                        }
                    }
                }
            } else if let Some(m) = self.model.as_mut() {
                let time = *m.facts.time();
                match m.drain_until {
                    Some(end) if time < end => {
                        if !probe.less_than(&time) {
                            // One pane per step: larger steps measured slower.
                            m.advance(time + 1);
                            m.flush();
                        } else {
                            idle = true;
                        }
                    }
                    _ => self.model = None,
                }
            } else if frontier.is_none() {
                // The writer completes what is pending once the workers are done.
                return Ok(false);
            }
            worker.step_or_park(if idle {
                Some(Duration::from_millis(1))
            } else {
                Some(Duration::ZERO)
            });
        }
    }

    /// The [`Context::stall_after`] test hook.
    fn stall_for_test(&self, worker: usize, started: Instant) {
        if let Some(after) = self.ctx.stall_after {
            if worker == 0 && started.elapsed() >= after {
                tracing::warn!("test hook: worker 0 stalls");
                while !self.ctx.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Hands this worker's part of checkpoint `id` to the writer; a part
    /// that cannot be queued skips this checkpoint (counted), it does not
    /// stop the job. `retry_for`: how long the writer may retry it.
    fn checkpoint(
        stats: &Stats,
        cp: &mut Checkpointer,
        source: &dyn Source,
        marks: &BTreeMap<PartitionId, Clock>,
        id: u64,
        frontier: Option<Pane>,
        retry_for: Option<Duration>,
    ) -> Result<()> {
        let Some(frontier) = frontier else {
            return Ok(());
        };
        let positions = source.positions();
        let clocks: BTreeMap<PartitionId, ClockState> =
            marks.iter().map(|(p, c)| (*p, clock_state(c))).collect();
        if let Err(e) = cp.take(id, frontier, &positions, &clocks, retry_for) {
            Stats::add(&stats.checkpoint_failures, 1);
            tracing::warn!(checkpoint = id, error = %e, "checkpoint part not queued; skipping this checkpoint");
        }
        Ok(())
    }

    /// Enters catalog changes that arrived since the last call (worker 0):
    /// at the pane of their `effective_at`, or now if that has passed.
    fn catalog_changes(&mut self, now: Pane) -> Result<()> {
        let Some(m) = self.model.as_mut() else {
            return Ok(());
        };
        let Some(feed) = m.feed.as_mut() else {
            return Ok(());
        };
        let (changes, refused) = feed.poll();
        for c in changes {
            let at = c
                .effective_at
                .and_then(|t| self.ctx.window.pane_of(t))
                .map_or(now, |p| p.max(now));
            if let Some(t) = &c.before {
                m.catalog.update_at(crate::model::entry(t), at, -1);
            }
            if let Some(t) = &c.after {
                m.catalog.update_at(crate::model::entry(t), at, 1);
            }
            Stats::add(&self.ctx.stats.catalog_changes, 1);
        }
        for r in refused {
            let letter = DeadLetter {
                reason: "catalog".into(),
                detail: r.reason,
                source: r.source,
                partition: r.partition,
                position: r.position,
                raw: r.raw,
            };
            self.dead.write(&letter, letter.raw.as_bytes())?;
            Stats::add(&self.ctx.stats.dead_lettered, 1);
            Stats::add(&self.ctx.stats.catalog_refused, 1);
            self.dead_dirty = true;
        }
        Ok(())
    }

    /// Classifies one batch: bad → dead letters; each event through its
    /// partition's clock: late or skewed → dead letters, views → pre-aggregated input.
    fn ingest(&mut self, session: &mut InputSession<Pane, ContentId, i64>) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let mut marks = std::mem::take(&mut self.marks);
        let judged = self.judge_batch(session, &batch, &mut marks);
        self.batch = batch;
        self.marks = marks;
        judged?;
        self.publish_clocks();
        self.feed_panes(session);
        let stats = &self.ctx.stats;
        Stats::add(&stats.read, self.batch.read);
        Stats::add(&stats.decoded, self.batch.events.len() as u64);
        Stats::add(&stats.invalid, self.batch.rejects.len() as u64);
        Stats::add(&stats.dead_lettered, self.batch.rejects.len() as u64);
        if !self.batch.rejects.is_empty() {
            self.dead_dirty = true;
        }
        Ok(())
    }

    /// Dead-letters the batch's rejects and runs its events through their clocks.
    fn judge_batch(
        &mut self,
        session: &InputSession<Pane, ContentId, i64>,
        batch: &Batch,
        marks: &mut BTreeMap<PartitionId, Clock>,
    ) -> Result<()> {
        for reject in &batch.rejects {
            let letter = DeadLetter {
                reason: reject.error.code().to_string(),
                detail: reject.error.to_string(),
                source: self.source_name.clone(),
                partition: reject.partition,
                position: reject.position,
                raw: String::from_utf8_lossy(&reject.raw).into_owned(),
            };
            self.dead.write(&letter, &reject.raw)?;
        }
        let floor = self.floor(session);
        let floor_ms = self.ctx.window.pane_start(floor);
        let slide_ms = self.ctx.window.slide_ms;
        let mut decided = std::mem::take(&mut self.decided);
        let mut start = 0;
        // The common case's sums stay in registers until the batch is done.
        let (mut views, mut top) = (0u64, None::<Pane>);
        // Runs of one partition share a clock lookup.
        while start < batch.events.len() {
            let partition = batch.partitions[start];
            let end = start
                + batch.partitions[start..]
                    .iter()
                    .take_while(|p| **p == partition)
                    .count();
            let clock = marks
                .entry(partition)
                .or_insert_with(|| PartitionClock::new(self.ctx.clock, self.ctx.window));
            let key = self.ledger_key(partition);
            for (event, &position) in batch.events[start..end]
                .iter()
                .zip(&batch.positions[start..end])
            {
                match clock.in_line(event.event_time) {
                    // The common case first: accepted, at or after the input's time.
                    Some(Verdict::Accept) if event.event_time >= floor_ms => {
                        let pane = (event.event_time / slide_ms) as Pane;
                        top = top.max(Some(pane));
                        views += self.count(key, event, pane);
                    }
                    Some(verdict) => self.judge(floor, partition, event, position, verdict)?,
                    None => {
                        clock.offer(event.event_time, (event.clone(), position), &mut decided);
                        for ((event, position), _, verdict) in decided.drain(..) {
                            self.judge(floor, partition, &event, position, verdict)?;
                        }
                    }
                }
            }
            start = end;
        }
        if let Some(pane) = top {
            self.fed_until = self.fed_until.max(pane + 1);
        }
        self.views += views;
        self.decided = decided;
        Ok(())
    }

    /// The least pane the input can still take: a partition that was idle may
    /// lag the input's time (after a restore, panes before the checkpoint time
    /// still can be fed, through the carry input).
    fn floor(&self, session: &InputSession<Pane, ContentId, i64>) -> Pane {
        if self.carry.is_some() {
            0
        } else {
            *session.time()
        }
    }

    /// Acts on one verdict: counts the event into the pre-aggregated input, or dead-letters it.
    fn judge(
        &mut self,
        floor: Pane,
        partition: PartitionId,
        event: &WatchEvent,
        position: u64,
        verdict: Verdict,
    ) -> Result<()> {
        let window = self.ctx.window;
        let pane = window.pane_of(event.event_time);
        let (reason, detail) = match (verdict, pane) {
            (Verdict::Accept, Some(pane)) if pane >= floor => {
                self.accept(partition, event, pane);
                return Ok(());
            }
            (Verdict::Accept, _) => (
                "late",
                format!(
                    "event time {} is {} behind the input frontier {} (partition {partition} was idle)",
                    rfc3339(event.event_time),
                    span(window.pane_start(floor) - event.event_time),
                    rfc3339(window.pane_start(floor))
                ),
            ),
            (Verdict::Late { behind_ms }, _) => (
                "late",
                format!(
                    "event time {} is {} behind the watermark {} of partition {partition}",
                    rfc3339(event.event_time),
                    span(behind_ms),
                    rfc3339(event.event_time + behind_ms)
                ),
            ),
            (Verdict::Skew { ahead_ms }, _) => (
                "clock_skew",
                format!(
                    "event time {} is {} ahead of partition {partition}'s clock and no other records corroborated it",
                    rfc3339(event.event_time),
                    span(ahead_ms)
                ),
            ),
        };
        let stats = &self.ctx.stats;
        if reason == "late" {
            Stats::add(&stats.late, 1);
        } else {
            Stats::add(&stats.clock_skew, 1);
        }
        Stats::add(&stats.dead_lettered, 1);
        self.dead_dirty = true;
        let raw = event.to_json();
        let letter = DeadLetter {
            reason: reason.into(),
            detail,
            source: self.source_name.clone(),
            partition,
            position,
            raw,
        };
        self.dead.write(&letter, letter.raw.as_bytes())
    }

    /// Counts an accepted event into this batch's pre-aggregated input.
    fn accept(&mut self, partition: PartitionId, event: &WatchEvent, pane: Pane) {
        self.fed_until = self.fed_until.max(pane + 1);
        let key = self.ledger_key(partition);
        self.views += self.count(key, event, pane);
    }

    /// The partition a count is kept under: only the checkpoint ledger needs
    /// counts apart by partition; without it, one count per (content, pane)
    /// keeps the dataflow's input as small as a worker's partitions allow.
    #[inline]
    fn ledger_key(&self, partition: PartitionId) -> PartitionId {
        if self.checkpointer.is_some() {
            partition
        } else {
            0
        }
    }

    /// Adds an accepted event to the pre-aggregated input; returns the views it is (0 or 1).
    #[inline(always)]
    fn count(&mut self, key: PartitionId, event: &WatchEvent, pane: Pane) -> u64 {
        let started = event.event_type == EventType::StartedVideo;
        match self.model.as_mut() {
            // With the model, its input carries the views (and its title stage counts them).
            Some(m) => m.panes.add(
                (key, event.content_id, pane, cell_of(event)),
                Obs::of_event(event),
            ),
            None if started => *self.panes.entry((key, event.content_id, pane)).or_insert(0) += 1,
            None => {}
        }
        started as u64
    }

    /// A partition ended: its clock decides what it still holds.
    fn finish_partition(
        &mut self,
        session: &mut InputSession<Pane, ContentId, i64>,
        partition: PartitionId,
    ) -> Result<()> {
        if let Some(mut clock) = self.marks.remove(&partition) {
            let mut decided = std::mem::take(&mut self.decided);
            clock.finish(&mut decided);
            self.act_on(session, partition, decided)?;
        }
        Ok(())
    }

    /// Acts on verdicts a clock gave outside a batch, then feeds what they counted.
    fn act_on(
        &mut self,
        session: &mut InputSession<Pane, ContentId, i64>,
        partition: PartitionId,
        mut decided: Vec<Decided>,
    ) -> Result<()> {
        let floor = self.floor(session);
        for ((event, position), _, verdict) in decided.drain(..) {
            self.judge(floor, partition, &event, position, verdict)?;
        }
        self.decided = decided;
        self.feed_panes(session);
        Ok(())
    }

    /// Idle partitions whose clock has not started start with what they hold.
    fn start_idle_clocks(
        &mut self,
        session: &mut InputSession<Pane, ContentId, i64>,
    ) -> Result<()> {
        let waiting: Vec<PartitionId> = self
            .marks
            .iter()
            .filter(|(p, c)| {
                c.base().is_none() && c.held().next().is_some() && self.source.is_idle(**p)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in waiting {
            let mut decided = std::mem::take(&mut self.decided);
            if let Some(clock) = self.marks.get_mut(&p) {
                clock.idle(&mut decided);
            }
            self.act_on(session, p, decided)?;
        }
        Ok(())
    }

    /// Each partition's watermark and the largest skew it rejected, for the gauges.
    fn publish_clocks(&self) {
        if let Ok(mut board) = self.ctx.stats.partition_clocks.lock() {
            for (p, c) in &self.marks {
                board.insert(*p, (c.millis().unwrap_or(0), c.max_skew_ms));
            }
        }
    }

    /// Hands this batch's pre-aggregated counts to the dataflow (and the checkpoint ledger).
    fn feed_panes(&mut self, session: &mut InputSession<Pane, ContentId, i64>) {
        Stats::add(&self.ctx.stats.views, std::mem::take(&mut self.views));
        let width = self.ctx.window.panes();
        for ((partition, content, pane), n) in self.panes.drain() {
            match self.carry.as_mut() {
                Some((carry, time)) => feed(session, carry, *time, width, content, pane, n),
                None => session.update_at(content, pane, n),
            }
            if let Some(cp) = self.checkpointer.as_mut() {
                cp.record(partition, content, pane, n);
            }
        }
        if let Some(m) = self.model.as_mut() {
            let time = self.carry.as_ref().map_or(0, |(_, t)| *t);
            m.panes.flush();
            let mut panes = std::mem::take(&mut m.panes.out);
            for ((partition, content, pane, cell), obs) in panes.drain(..) {
                m.feed(width, time, (content, cell), pane, obs);
                if let Some(cp) = self.checkpointer.as_mut() {
                    for (watch, v) in [(false, obs.views), (true, obs.watch_ms)] {
                        if v != 0 {
                            cp.record(partition, fact_key(content, cell, watch), pane, v);
                        }
                    }
                }
            }
            m.panes.out = panes;
        }
    }
}

/// A worker's step time cell; marks the worker finished however its loop ends.
struct Stepping(Arc<std::sync::atomic::AtomicI64>);

impl Drop for Stepping {
    fn drop(&mut self) {
        crate::stats::Steps::finish(&self.0);
    }
}
