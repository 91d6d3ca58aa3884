//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use popularity::config::{JobConfig, SourceKind};
use popularity::core::catalog::Catalog;
use popularity::core::event::{ContentId, Validation};
use popularity::core::stats::StatsSnapshot;
use popularity::job::{execute, Context};
use popularity::oracle::Expected;
use popularity::sink::deadletter::{read_local, DeadLetter};
use popularity::sink::snapshot::{hour_prefix, published_hours, read_hour, TITLES};
use popularity::sink::store::{LocalStore, ObjectStore};
use popularity::source::traffic::{GenItem, Generator, GeneratorConfig};

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("popularity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A generator config with plenty of disorder, lateness and junk, spanning a few hours.
pub fn messy(seed: u64, events: u64) -> GeneratorConfig {
    GeneratorConfig {
        events,
        seed,
        time_rate: 4.0,
        titles: 400,
        out_of_order: 0.15,
        max_disorder: "4m".into(),
        late: 0.03,
        late_by: "20m".into(),
        invalid: 0.02,
        ..GeneratorConfig::default()
    }
}

/// Writes the generator's records to a JSON-lines file, as `popularity generate` does.
pub fn write_events(path: &Path, cfg: &GeneratorConfig, catalog_titles: usize) -> Generator {
    let start = popularity::core::time::parse_rfc3339(&cfg.start).expect("valid start");
    let catalog = Catalog::synthesize(catalog_titles, 7, start).expect("valid catalog");
    let g = Generator::new(cfg, &catalog).expect("valid generator");
    std::fs::write(path, events_text(&g, 0..cfg.events)).expect("write events");
    g
}

/// The records `range` of `g` as JSON lines (malformed ones as generated).
pub fn events_text(g: &Generator, range: std::ops::Range<u64>) -> String {
    let mut text = String::new();
    for i in range {
        match g.item(i) {
            GenItem::Event(e) => text.push_str(&e.to_json()),
            GenItem::Malformed(s) => text.push_str(&s),
        }
        text.push('\n');
    }
    text
}

/// Produces a JSON-lines file with the standard client (confluent-kafka,
/// `scripts/produce.py`), configured with `extra` (`key=value`).
pub fn produce_file_with(brokers: &str, topic: &str, path: &Path, extra: &[String]) {
    let out = std::process::Command::new("python3")
        .arg(script("produce.py"))
        .args([brokers, topic, "none"])
        .arg(path)
        .args(extra)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "producing to {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `popularity run --job <job> <args>` with its output piped; wait
/// for it with [`wait_bounded`], [`wait_group`] or [`wait_each`], which read
/// the pipes.
pub fn spawn_job(job: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_popularity"))
        .args(["run", "--job"])
        .arg(job)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn job")
}

/// How many records a job that must have succeeded read (its summary line).
pub fn records_read(out: &std::process::Output) -> u64 {
    assert!(
        out.status.success(),
        "job failed: {}",
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("read ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no summary in {text:?}"))
}

/// Runs a job to its end (at most five minutes); how many records it read.
pub fn run_to_end(job: &Path, args: &[&str]) -> u64 {
    records_read(&wait_bounded(
        spawn_job(job, args),
        std::time::Duration::from_secs(300),
        "job",
    ))
}

/// A job reading `events` and writing under `dir`.
pub fn file_job(dir: &Path, events: &Path) -> JobConfig {
    let mut job = JobConfig::default();
    job.source.kind = SourceKind::File;
    job.source.file.path = events.to_path_buf();
    job.source.batch = 997; // odd, so batches cut across panes and hours
    job.sink.path = dir.join("snapshots");
    job.dead_letter.path = dir.join("dead-letters");
    job.catalog.titles = 400;
    job
}

/// Runs a job in this process with `workers` threads.
pub fn run_in_process(job: JobConfig, workers: usize) -> StatsSnapshot {
    let ctx = Arc::new(Context::from_job(job).expect("valid job"));
    execute(timely::Config::process(workers), ctx).expect("job runs")
}

/// A job's context with its endpoint listening on a free port, and the
/// endpoint's address.
pub fn serving(mut job: JobConfig) -> (Context, String) {
    job.metrics.listen = format!("127.0.0.1:{}", free_port());
    let ctx = Context::from_job(job).expect("valid job");
    let addr = ctx
        .serve_metrics(0, 1)
        .expect("binds")
        .expect("enabled")
        .to_string();
    (ctx, addr)
}

/// Runs a job on two worker threads in the background.
pub fn run_in_background(ctx: Context) -> (Arc<Context>, std::thread::JoinHandle<StatsSnapshot>) {
    let ctx = Arc::new(ctx);
    let runner = {
        let ctx = ctx.clone();
        std::thread::spawn(move || execute(timely::Config::process(2), ctx).expect("job runs"))
    };
    (ctx, runner)
}

/// Times `n` sequential calls of `call` and prints p50, p99 and the
/// maximum: a figure to report, not to assert (a benchmark, not a timed test).
pub fn report_latency(what: &str, n: usize, mut call: impl FnMut()) {
    let mut times: Vec<std::time::Duration> = (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            call();
            t.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "{what} latency over {n} sequential requests: p50 {:?}, p99 {:?}, max {:?}",
        times[n / 2],
        times[n * 99 / 100],
        times[n - 1]
    );
}

/// `(value, content id)` of each entry of a ranking the API answered.
pub fn ranked(body: &serde_json::Value) -> Vec<(f64, u64)> {
    body["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .map(|t| {
            (
                t["value"].as_f64().expect("value"),
                t["content_id"].as_u64().expect("id"),
            )
        })
        .collect()
}

/// Every published hour of a store: hour → content → views, checking manifests against the files.
pub fn published(root: &Path) -> BTreeMap<u64, BTreeMap<ContentId, i64>> {
    let store = LocalStore::new(root).expect("store");
    let mut out = BTreeMap::new();
    for hour in published_hours(&store).expect("list hours") {
        let (manifest, rows) = read_hour(&store, hour)
            .expect("read hour")
            .expect("published");
        // The manifest lists exactly the parts present.
        let prefix = hour_prefix(TITLES, hour);
        let mut present: Vec<String> = store
            .list(&prefix)
            .expect("list")
            .into_iter()
            .map(|k| k[prefix.len()..].to_string())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        present.sort();
        let listed: Vec<String> = manifest.parts.iter().map(|p| p.name.clone()).collect();
        assert_eq!(present, listed, "parts of hour {hour}");
        assert_eq!(manifest.rows, rows.len() as u64);
        let mut counts = BTreeMap::new();
        for r in rows {
            assert!(r.views != 0, "zero rows are not written");
            assert!(
                counts.insert(r.content_id, r.views).is_none(),
                "content {} twice in hour {hour}",
                r.content_id
            );
            assert_eq!(r.window_end - r.window_start, 3_600_000);
        }
        out.insert(hour, counts);
    }
    out
}

/// Dead letters by reason.
pub fn dead_letter_counts(dir: &Path) -> (BTreeMap<String, u64>, Vec<DeadLetter>) {
    let letters = read_local(dir).expect("read dead letters");
    let mut counts = BTreeMap::new();
    for l in &letters {
        *counts.entry(l.reason.clone()).or_insert(0) += 1;
    }
    (counts, letters)
}

/// Validation limits matching the pipeline's defaults.
pub fn limits() -> Validation {
    Validation {
        now_ms: popularity::core::time::now_ms(),
        max_future_ms: 86_400_000,
    }
}

/// Asserts the pipeline's output equals the recount, with a readable diff.
pub fn assert_matches(got: &BTreeMap<u64, BTreeMap<ContentId, i64>>, want: &Expected, what: &str) {
    assert!(
        !want.hours.is_empty(),
        "{what}: the oracle expects no hours; the test is vacuous"
    );
    let got_hours: Vec<u64> = got.keys().copied().collect();
    let want_hours: Vec<u64> = want.hours.keys().copied().collect();
    assert_eq!(got_hours, want_hours, "{what}: published hours");
    for (hour, want_counts) in &want.hours {
        let got_counts = &got[hour];
        if got_counts != want_counts {
            let diff: Vec<String> = want_counts
                .iter()
                .filter(|(c, n)| got_counts.get(c) != Some(n))
                .map(|(c, n)| format!("{c}: want {n} got {:?}", got_counts.get(c)))
                .chain(
                    got_counts
                        .iter()
                        .filter(|(c, _)| !want_counts.contains_key(c))
                        .map(|(c, n)| format!("{c}: unexpected {n}")),
                )
                .take(10)
                .collect();
            panic!("{what}: hour {hour} differs: {diff:?}");
        }
    }
}

/// A real Kafka-protocol broker started by `scripts/kafka.sh`, stopped on drop.
pub struct Broker {
    /// `host:port`.
    pub addr: String,
    /// Port it listens on.
    pub port: u16,
    dir: PathBuf,
    storage: Option<String>,
    env: Vec<(String, String)>,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// The first of `n` consecutive ports that are all free right now (a
/// cluster's processes listen on base, base+1, ...).
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let held: Vec<_> = (0..n)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Waits for a child at most `limit`; past it, kills the child and panics
/// (a test that hangs would stall the whole run instead of failing).
pub fn wait_bounded(
    child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    wait_group(vec![child], limit, what).remove(0)
}

/// Waits for the processes of one cluster at most `limit`. When one fails,
/// its peers would wait for it forever: they are killed, and the test fails
/// with every process's stderr.
pub fn wait_group(
    children: Vec<std::process::Child>,
    limit: std::time::Duration,
    what: &str,
) -> Vec<std::process::Output> {
    let (outputs, trouble) = collect(children, limit, true);
    let outputs: Vec<_> = outputs.into_iter().map(|(o, _)| o).collect();
    if let Some(trouble) = trouble {
        let logs: Vec<String> = outputs
            .iter()
            .enumerate()
            .map(|(k, o)| {
                format!(
                    "--- process {k} ({}), stderr ends:\n{}",
                    o.status,
                    tail(&String::from_utf8_lossy(&o.stderr), 15)
                )
            })
            .collect();
        panic!("{what}: {trouble}\n{}", logs.join("\n"));
    }
    outputs
}

/// Waits for every process at most `limit`, whether or not some fail; the
/// ones still running then are killed and come back as `None` (their stderr
/// is printed), so a test can assert which processes stopped by themselves.
pub fn wait_each(
    children: Vec<std::process::Child>,
    limit: std::time::Duration,
) -> Vec<Option<std::process::Output>> {
    let (outputs, _) = collect(children, limit, false);
    outputs
        .into_iter()
        .enumerate()
        .map(|(k, (o, by_itself))| {
            if !by_itself {
                eprintln!(
                    "process {k} killed after {limit:?}: {}",
                    tail(&String::from_utf8_lossy(&o.stderr), 15)
                );
            }
            by_itself.then_some(o)
        })
        .collect()
}

/// Runs `children` to their end or to `limit` (or, with `stop_on_failure`,
/// to the first failure), kills the rest, and returns each one's output with
/// whether it exited by itself. The pipes are drained on threads: a chatty
/// child must never block on a full pipe the test is not reading.
fn collect(
    mut children: Vec<std::process::Child>,
    limit: std::time::Duration,
    stop_on_failure: bool,
) -> (Vec<(std::process::Output, bool)>, Option<String>) {
    use std::io::Read;
    let began = std::time::Instant::now();
    fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let pipes: Vec<_> = children
        .iter_mut()
        .map(|c| (drain(c.stdout.take()), drain(c.stderr.take())))
        .collect();
    let mut status: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
    let mut trouble = None;
    while status.iter().any(|s| s.is_none()) {
        for (c, s) in children.iter_mut().zip(status.iter_mut()) {
            if s.is_none() {
                *s = c.try_wait().expect("poll child");
            }
        }
        let failed = status.iter().position(|s| s.is_some_and(|s| !s.success()));
        if let (true, Some(k)) = (stop_on_failure, failed) {
            trouble = Some(format!("process {k} failed"));
        } else if began.elapsed() > limit {
            trouble = Some(format!("still running after {limit:?}"));
        }
        if trouble.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (c, s) in children.iter_mut().zip(&status) {
        if s.is_none() {
            let _ = c.kill();
        }
    }
    let outputs = children
        .into_iter()
        .zip(pipes)
        .zip(status)
        .map(|((mut c, (out, err)), s)| {
            let output = std::process::Output {
                status: c.wait().expect("reap child"),
                stdout: out.join().unwrap_or_default(),
                stderr: err.join().unwrap_or_default(),
            };
            (output, s.is_some())
        })
        .collect();
    (outputs, trouble)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

impl Broker {
    /// Starts a broker with memory storage.
    pub fn start(name: &str) -> Broker {
        Broker::start_with(name, None, Vec::new())
    }

    /// Starts a broker with the given storage engine URL and extra environment.
    pub fn start_with(name: &str, storage: Option<String>, env: Vec<(String, String)>) -> Broker {
        let port = free_port();
        let dir = scratch(&format!("broker-{name}"));
        let b = Broker {
            addr: format!("127.0.0.1:{port}"),
            port,
            dir,
            storage,
            env,
        };
        b.up();
        b
    }

    /// (Re)starts the broker process.
    pub fn up(&self) {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(script("kafka.sh"))
            .args(["start", "--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir);
        if let Some(s) = &self.storage {
            cmd.env("TANSU_STORAGE", s);
        }
        cmd.envs(self.env.iter().cloned());
        let out = cmd.output().expect("run kafka.sh");
        assert!(
            out.status.success(),
            "broker start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the broker process.
    pub fn down(&self) {
        let _ = std::process::Command::new("bash")
            .arg(script("kafka.sh"))
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .output();
    }

    /// Creates a topic.
    pub fn topic(&self, name: &str, partitions: u32) {
        let out = std::process::Command::new("bash")
            .arg(script("kafka.sh"))
            .args([
                "topic",
                name,
                &partitions.to_string(),
                "--port",
                &self.port.to_string(),
            ])
            .output()
            .expect("run kafka.sh");
        assert!(
            out.status.success(),
            "topic create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Records of a topic by partition: (offset, payload, headers).
pub type TopicRecords = BTreeMap<i32, Vec<(i64, Vec<u8>, Vec<(String, String)>)>>;

/// Every record of every partition of `topic`, in offset order, with its headers;
/// reads until no record has arrived for `quiet`.
pub fn read_topic(brokers: &str, topic: &str, quiet: std::time::Duration) -> TopicRecords {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: TopicRecords = parts.iter().map(|p| (*p, Vec::new())).collect();
    let mut last = std::time::Instant::now();
    while last.elapsed() < quiet {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = std::time::Instant::now();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or(&[])).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.entry(m.partition()).or_default().push((
                    m.offset(),
                    m.payload().unwrap_or(&[]).to_vec(),
                    headers,
                ));
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    for (p, records) in &out {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let jumps: Vec<(i64, i64)> = offsets
            .windows(2)
            .filter(|w| w[1] != w[0] + 1)
            .map(|w| (w[0], w[1]))
            .take(5)
            .collect();
        assert!(
            jumps.is_empty() && offsets.first().is_none_or(|o| *o == 0),
            "offsets of partition {p} are not contiguous from 0: first {:?}, jumps {jumps:?}, {} records",
            offsets.first(),
            offsets.len()
        );
    }
    out
}

/// Produces the generator's records to `topic`, keyed by user id as `popularity generate --kafka` does.
/// Creates `topic` (with `partitions`) and its dead-letter topic, produces
/// `cfg`'s events into it, and returns each partition's records as the
/// broker holds them (read back with a plain consumer).
pub fn fill_topic(
    broker: &Broker,
    topic: &str,
    partitions: u32,
    cfg: &GeneratorConfig,
) -> Vec<Vec<Vec<u8>>> {
    broker.topic(topic, partitions);
    broker.topic(&format!("{topic}-dlq"), 1);
    produce_generated(&broker.addr, topic, &generator(cfg), cfg.events);
    read_topic(&broker.addr, topic, std::time::Duration::from_secs(2))
        .values()
        .map(|rs| rs.iter().map(|r| r.1.clone()).collect())
        .collect()
}

pub fn produce_generated(brokers: &str, topic: &str, g: &Generator, events: u64) {
    let cfg = popularity::source::kafka::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let records = (0..events).map(|i| match g.item(i) {
        GenItem::Event(e) => (e.user_id.to_string().into_bytes(), e.to_json().into_bytes()),
        GenItem::Malformed(s) => (b"malformed".to_vec(), s.into_bytes()),
    });
    let done = popularity::source::kafka::produce(&cfg, topic, records, 0.0, &stop, |_| {})
        .expect("produce");
    assert_eq!(
        (done.sent, done.delivered, done.failed),
        (events, events, 0)
    );
}

/// A job reading `topic` until every partition has been quiet for a moment.
pub fn kafka_job(dir: &Path, brokers: &str, topic: &str) -> JobConfig {
    let mut job = JobConfig::default();
    job.job.name = "test".into();
    job.source.kind = SourceKind::Kafka;
    job.source.batch = 1000;
    let k = &mut job.source.kafka;
    k.brokers = brokers.to_string();
    k.topic = topic.to_string();
    k.dead_letter_topic = format!("{topic}-dlq");
    k.until = popularity::source::kafka::Until::Idle;
    k.idle_timeout = "3s".into();
    job.sink.path = dir.join("snapshots");
    job.dead_letter.path = dir.join("dead-letters");
    job.catalog.titles = 400;
    job
}

/// A generator over the standard 400-title test catalog.
pub fn generator(cfg: &GeneratorConfig) -> Generator {
    let start = popularity::core::time::parse_rfc3339(&cfg.start).expect("valid start");
    Generator::new(
        cfg,
        &Catalog::synthesize(400, 7, start).expect("valid catalog"),
    )
    .expect("valid generator")
}

/// A real S3 store (single-node Garage) started by `scripts/garage.sh`, stopped on drop.
pub struct S3 {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    /// S3 API port.
    pub port: u16,
    dir: PathBuf,
}

/// Access key of the test store.
pub const S3_KEY_ID: &str = "GK0123456789abcdef01234567";
/// Secret of the test store.
pub const S3_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

impl S3 {
    /// Starts a fresh store.
    pub fn start(name: &str) -> S3 {
        // Garage uses the port and the two after it.
        let port = loop {
            let p = free_port();
            if p < 65_000
                && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
            {
                break p;
            }
        };
        let dir = scratch(&format!("garage-{name}"));
        let s3 = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            dir,
        };
        s3.up();
        s3
    }

    fn run(&self, args: &[&str]) {
        let out = std::process::Command::new("bash")
            .arg(script("garage.sh"))
            .args(args)
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir)
            .output()
            .expect("run garage.sh");
        assert!(
            out.status.success(),
            "garage.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// (Re)starts the server.
    pub fn up(&self) {
        self.run(&["start"]);
    }

    /// Stops the server.
    pub fn down(&self) {
        self.run(&["stop"]);
    }

    /// Freezes the server (SIGSTOP): connections open, nothing answers, as
    /// a hung store behaves. [`S3::down`] still stops it.
    pub fn freeze(&self) {
        let pid = std::fs::read_to_string(self.dir.join("garage.pid")).expect("garage.pid");
        let status = std::process::Command::new("kill")
            .args(["-STOP", pid.trim()])
            .status()
            .expect("kill -STOP");
        assert!(status.success(), "froze garage {pid}");
    }

    /// Creates a bucket the test key may use.
    pub fn bucket(&self, name: &str) {
        self.run(&["bucket", name]);
    }

    /// Environment for S3 clients of this store.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET.into()),
            ("AWS_REGION".into(), "garage".into()),
            ("AWS_DEFAULT_REGION".into(), "garage".into()),
            ("AWS_ENDPOINT".into(), self.endpoint.clone()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP GET on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_get_with(addr, path, "")
}

/// As [`http_get`], with extra header lines (each ending in `\r\n`).
pub fn http_get_with(addr: &str, path: &str, headers: &str) -> (u16, String) {
    let text = http_exchange(addr, path, headers);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The whole answer (status line, headers, body) to a GET.
pub fn http_exchange(addr: &str, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    text
}

impl S3 {
    /// A store configuration for `bucket`/`prefix` in this Garage, with the test key.
    pub fn config(&self, bucket: &str, prefix: &str) -> popularity::sink::s3::S3Config {
        popularity::sink::s3::S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: "garage".into(),
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            access_key_id: Some(S3_KEY_ID.into()),
            secret_access_key: Some(S3_SECRET.into()),
            ..popularity::sink::s3::S3Config::default()
        }
    }
}
