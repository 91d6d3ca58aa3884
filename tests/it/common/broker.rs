//! A real Kafka-protocol broker (`scripts/kafka.sh`) and its topics,
//! filled and read with the standard client and the job's own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use popularity::config::{JobConfig, SourceKind};
use popularity::source::traffic::{GenItem, Generator, GeneratorConfig};

use super::{free_port, generator, run_ok, scratch, script};

/// Produces a JSON-lines file with the standard client (confluent-kafka,
/// `scripts/produce.py`), configured with `extra` (`key=value`).
pub fn produce_file_with(brokers: &str, topic: &str, path: &Path, extra: &[String]) {
    run_ok(
        std::process::Command::new("python3")
            .arg(script("produce.py"))
            .args([brokers, topic, "none"])
            .arg(path)
            .args(extra),
        &format!("producing to {topic}"),
    );
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

impl Broker {
    /// Starts a broker with memory storage.
    pub fn start(name: &str) -> Broker {
        Broker::start_with(name, None, Vec::new())
    }

    /// Starts a broker with memory storage and the topics most tests read:
    /// `events` with `partitions` partitions and its dead-letter topic `events-dlq`.
    pub fn with_events(name: &str, partitions: u32) -> Broker {
        let broker = Broker::start(name);
        broker.topic("events", partitions);
        broker.topic("events-dlq", 1);
        broker
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
        run_ok(
            std::process::Command::new("bash")
                .arg(script("kafka.sh"))
                .args([
                    "topic",
                    name,
                    &partitions.to_string(),
                    "--port",
                    &self.port.to_string(),
                ]),
            "topic create failed",
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
    // From offset 0, not `Offset::Beginning`: the test broker answers
    // "earliest" with the batch it stored first in time, which is not offset 0
    // when two producers' first batches land out of order; a fetch from 0
    // returns every batch in offset order.
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(0))
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
    k.idle_timeout = Duration::from_secs(3);
    job.sink.path = dir.join("snapshots");
    job.dead_letter.path = dir.join("dead-letters");
    job.catalog.titles = 400;
    job
}

/// Produces `g`'s items `range` to `topic` at `rate` records a second (0:
/// as fast as it goes) with the job's own producer, keyed by user id.
pub fn produce_at_rate(
    brokers: &str,
    topic: &str,
    g: &Generator,
    range: std::ops::Range<u64>,
    rate: f64,
) {
    let cfg = popularity::source::kafka::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let records = range.map(|i| match g.item(i) {
        GenItem::Event(e) => (e.user_id.to_string().into_bytes(), e.to_json().into_bytes()),
        GenItem::Malformed(s) => (b"malformed".to_vec(), s.into_bytes()),
    });
    popularity::source::kafka::produce(&cfg, topic, records, rate, &stop, |_| {}).expect("produce");
}
