//! What a job's workers share: the job, its catalog, store, counters and
//! boards; the source each worker opens and the store the job opens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{JobConfig, SinkConfig, SinkKind, SourceKind};
use crate::core::catalog::Catalog;
use crate::core::clock::ClockRule;
use crate::core::error::{Error, FaultSlot, Result};
use crate::core::event::Validation;
use crate::core::model::ModelSpec;
use crate::core::stats::Stats;
use crate::core::time::WindowSpec;
use crate::dataflow::live::{LiveBoard, ModelBoard};
use crate::sink::store::{LocalStore, ObjectStore};
use crate::source::file::FileSource;
use crate::source::generator::GeneratorSource;
use crate::source::kafka::{KafkaSource, ProgressBoard};
use crate::source::read_ahead::{ReadAhead, SendSource};
use crate::source::traffic::Generator;
use crate::source::{PartitionId, Source};

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
    pub live: Arc<LiveBoard>,
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
        let start =
            crate::core::time::parse_rfc3339(&job.source.generator.start).ok_or_else(|| {
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
        let store: Option<Arc<dyn ObjectStore>> = open_store(&job.sink)?.map(|s| {
            Arc::new(crate::sink::measured::Measured::new(s, stats.clone())) as Arc<dyn ObjectStore>
        });
        let model = if job.model.enabled {
            let mut spec = (job.model)
                .spec(window.slide_ms, window.panes())
                .map_err(Error::Config)?;
            // A block must complete within the sources' lead.
            spec.block_panes = spec.block_panes.min(job.window.max_lead_panes).max(1);
            spec.near_ms += crate::core::time::millis(job.window.allowed_lateness);
            Some(spec)
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
            provisional: self.job.metrics.provisional,
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

    /// Worker `index`'s source, read ahead on its own thread unless
    /// `source.read-ahead` is 0; and its name for dead letters.
    pub(super) fn open_source(
        &self,
        index: usize,
        peers: usize,
        offsets: &BTreeMap<PartitionId, i64>,
    ) -> Result<(Box<dyn Source>, String)> {
        let (source, name) = self.open_plain_source(index, peers, offsets)?;
        let ahead = self.job.source.read_ahead;
        if ahead == 0 {
            return Ok((source, name));
        }
        let thread = format!("source-{index}");
        let source = ReadAhead::start(source, ahead, self.job.source.batch, thread)?;
        Ok((Box::new(source), name))
    }

    fn open_plain_source(
        &self,
        index: usize,
        peers: usize,
        offsets: &BTreeMap<PartitionId, i64>,
    ) -> Result<(SendSource, String)> {
        let limits = Validation {
            now_ms: crate::core::time::now_ms(),
            max_future_ms: self.job.source.max_future_ms(),
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

/// Opens the configured store (for S3: connects and checks the bucket); a
/// local store first sweeps the temp files of writes a crash left unfinished.
pub fn open_store(sink: &SinkConfig) -> Result<Option<Arc<dyn ObjectStore>>> {
    Ok(match sink.kind {
        SinkKind::Local => {
            let store = LocalStore::new(&sink.path)?;
            let swept = store.sweep()?;
            if swept > 0 {
                tracing::info!(swept, path = %sink.path.display(), "removed temp files of unfinished writes");
            }
            Some(Arc::new(store))
        }
        SinkKind::S3 => Some(Arc::new(crate::sink::s3::S3Store::connect(&sink.s3)?)),
        SinkKind::None => None,
    })
}
