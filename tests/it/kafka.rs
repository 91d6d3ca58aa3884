//! Kafka in and out against a real broker (started by `scripts/kafka.sh`).
//!
//! Events with late and malformed records go into a multi-partition topic;
//! the job reads it with 1 and 2 workers and with 2 processes; every hourly
//! snapshot must equal the recount of exactly the records in the topic, and
//! the dead-letter topic must hold exactly the rejected records.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::oracle::recount_hourly;
use crate::common::*;

fn topic_partitions(brokers: &str, topic: &str) -> (Vec<Vec<Vec<u8>>>, TopicRecords) {
    let records = read_topic(brokers, topic, Duration::from_secs(2));
    let parts = records
        .values()
        .map(|rs| rs.iter().map(|r| r.1.clone()).collect())
        .collect();
    (parts, records)
}

fn check_dead_letters(
    brokers: &str,
    topic: &str,
    want: &crate::common::oracle::Expected,
    partitions: &[i32],
) {
    let dlq = read_topic(brokers, &format!("{topic}-dlq"), Duration::from_secs(2));
    let mut got: Vec<(usize, usize, String)> = dlq
        .values()
        .flatten()
        .map(|(_, _, headers)| {
            let h: BTreeMap<&str, &str> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let p: i32 = h["source-partition"].parse().expect("partition header");
            let k = partitions
                .iter()
                .position(|x| *x == p)
                .expect("known partition");
            (
                k,
                h["source-offset"].parse().expect("offset header"),
                h["reason"].to_string(),
            )
        })
        .collect();
    got.sort();
    let mut expected = want.rejected.clone();
    expected.sort();
    assert_eq!(got.len(), expected.len(), "dead-letter count");
    assert_eq!(
        got, expected,
        "dead letters by partition, offset and reason"
    );
}

#[test]
fn kafka_source_matches_recount_and_dead_letters_are_exact() {
    let broker = Broker::with_events("oracle", 4);
    let cfg = messy(21, 40_000);
    produce_generated(&broker.addr, "events", &generator(&cfg), cfg.events);
    let (parts, records) = topic_partitions(&broker.addr, "events");
    assert_eq!(
        parts.iter().map(|p| p.len()).sum::<usize>(),
        40_000,
        "the topic holds every record"
    );
    assert!(
        parts.iter().all(|p| !p.is_empty()),
        "keys spread over all partitions"
    );
    let ids: Vec<i32> = records.keys().copied().collect();
    let want = recount_hourly(&parts);
    for workers in [1usize, 2] {
        let dir = scratch(&format!("kafka-w{workers}"));
        let mut job = kafka_job(&dir, &broker.addr, "events");
        job.source.kafka.dead_letter_topic = format!("events-w{workers}-dlq");
        broker.topic(&job.source.kafka.dead_letter_topic, 1);
        let stats = run_in_process(job, workers);
        assert_eq!(stats.read, 40_000);
        check_dead_letters(&broker.addr, &format!("events-w{workers}"), &want, &ids);
        assert_matches(
            &published(&dir.join("snapshots")),
            &want,
            &format!("kafka, {workers} workers"),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn two_processes_read_every_partition_once() {
    let broker = Broker::with_events("cluster", 3);
    let cfg = messy(22, 30_000);
    produce_generated(&broker.addr, "events", &generator(&cfg), cfg.events);
    let (parts, records) = topic_partitions(&broker.addr, "events");
    let ids: Vec<i32> = records.keys().copied().collect();
    let want = recount_hourly(&parts);
    let dir = scratch("kafka-cluster");
    let job_path = dir.join("job.toml");
    std::fs::write(
        &job_path,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[job]\nname = \"cluster\"\n[source]\nkind = \"kafka\"\n[source.kafka]\nbrokers = \"{}\"\ntopic = \"events\"\ndead-letter-topic = \"events-dlq\"\nuntil = \"idle\"\nidle-timeout = \"3s\"\n[catalog]\ntitles = 400\n[sink]\npath = \"{}\"\n",
            broker.addr,
            dir.join("snapshots").display()
        ),
    )
    .expect("job file");
    run_cluster_to_end(&job_path, &dir, 2, 1);
    assert_matches(
        &published(&dir.join("snapshots")),
        &want,
        "kafka, 2 processes",
    );
    check_dead_letters(&broker.addr, "events", &want, &ids);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_broker_and_missing_topic_are_clear_errors() {
    let dir = scratch("kafka-errors");
    let mut job = kafka_job(&dir, &format!("127.0.0.1:{}", free_port()), "events");
    job.source.kafka.connect_attempts = 2;
    job.source.kafka.connect_backoff = Duration::from_millis(100);
    let ctx = std::sync::Arc::new(popularity::job::Context::from_job(job).expect("valid job"));
    let started = std::time::Instant::now();
    let errors_before = popularity::source::kafka::client_errors();
    let err = popularity::job::execute(timely::Config::thread(), ctx).expect_err("no broker");
    assert!(
        err.to_string().contains("unreachable after 2 attempts"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded retries"
    );
    assert!(
        popularity::source::kafka::client_errors() >= errors_before + 2,
        "the client's own errors reach the job (logged and counted)"
    );

    let broker = Broker::start("errors");
    let job = kafka_job(&dir, &broker.addr, "no-such-topic");
    let ctx = std::sync::Arc::new(popularity::job::Context::from_job(job).expect("valid job"));
    let err = popularity::job::execute(timely::Config::thread(), ctx).expect_err("no topic");
    assert!(
        err.to_string().contains("`no-such-topic` does not exist"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broker_restart_mid_run_loses_and_duplicates_nothing() {
    // A broker that survives a restart keeps its log in S3 (a real Garage).
    let s3 = S3::start("broker-restart");
    s3.bucket("tansu");
    let broker = Broker::start_with("restart", Some("s3://tansu/".into()), s3.env());
    broker.topic("events", 2);
    broker.topic("events-dlq", 1);
    let cfg = messy(23, 120_000);
    let g = generator(&cfg);
    // First part before the job starts.
    let first: Vec<(Vec<u8>, Vec<u8>)> = (0..20_000).map(|i| keyed(&g, i)).collect();
    produce_records(&broker.addr, "events", first);
    let dir = scratch("kafka-restart");
    let mut job = kafka_job(&dir, &broker.addr, "events");
    job.source.kafka.idle_timeout = Duration::from_secs(20);
    // This broker forgets idempotent-producer state on restart (the producer
    // then fails with OutOfOrderSequenceNumber), so dead letters go without it here.
    job.source
        .kafka
        .properties
        .insert("enable.idempotence".into(), "false".into());
    let ctx = std::sync::Arc::new(popularity::job::Context::from_job(job).expect("valid job"));
    let stats = ctx.stats.clone();
    let runner = std::thread::spawn(move || {
        popularity::job::execute(timely::Config::process(2), ctx).expect("job runs")
    });
    std::thread::sleep(Duration::from_secs(2));
    // The rest goes in while the job is reading, and the broker stops right
    // after it, normally with part of it not yet read.
    let second: Vec<(Vec<u8>, Vec<u8>)> = (20_000..120_000).map(|i| keyed(&g, i)).collect();
    produce_records(&broker.addr, "events", second);
    broker.down();
    let read_at_stop = stats.snapshot().read;
    eprintln!("records read when the broker stopped: {read_at_stop} of 120000");
    std::thread::sleep(Duration::from_secs(3));
    // Nothing is produced after the restart: this broker resumes its offsets
    // from a miscounted end offset and would overwrite records.
    broker.up();
    let stats = runner.join().expect("job thread");
    let (parts, _) = topic_partitions(&broker.addr, "events");
    assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 120_000);
    assert_eq!(stats.read, 120_000, "every record read exactly once");
    let want = recount_hourly(&parts);
    assert_matches(
        &published(&dir.join("snapshots")),
        &want,
        "broker restarted mid-run",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn keyed(g: &popularity::source::traffic::Generator, i: u64) -> (Vec<u8>, Vec<u8>) {
    match g.item(i) {
        popularity::source::traffic::GenItem::Event(e) => {
            (e.user_id.to_string().into_bytes(), e.to_json().into_bytes())
        }
        popularity::source::traffic::GenItem::Malformed(s) => {
            (b"malformed".to_vec(), s.into_bytes())
        }
    }
}

fn produce_records(brokers: &str, topic: &str, records: Vec<(Vec<u8>, Vec<u8>)>) {
    let cfg = popularity::source::kafka::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    let n = records.len() as u64;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let done =
        popularity::source::kafka::produce(&cfg, topic, records.into_iter(), 0.0, &stop, |_| {})
            .expect("produce");
    assert_eq!((done.sent, done.delivered, done.failed), (n, n, 0));
}

#[test]
fn every_codec_a_standard_producer_uses_is_read_whole() {
    let broker = Broker::start("codecs");
    let dir = scratch("kafka-codecs");
    let events = dir.join("events.jsonl");
    let cfg = messy(23, 10_000);
    write_events(&events, &cfg, 400);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("events-{codec}");
        broker.topic(&topic, 4);
        broker.topic(&format!("{topic}-dlq"), 1);
        run_ok(
            std::process::Command::new("python3")
                .arg(script("produce.py"))
                .args([&broker.addr, &topic, codec])
                .arg(&events),
            &format!("{codec}: the producer failed"),
        );
        let (parts, _) = topic_partitions(&broker.addr, &topic);
        assert_eq!(
            parts.iter().map(|p| p.len()).sum::<usize>(),
            10_000,
            "{codec}: the topic holds every record"
        );
        let want = recount_hourly(&parts);
        let run = dir.join(codec);
        let stats = run_in_process(kafka_job(&run, &broker.addr, &topic), 2);
        assert_eq!(stats.read, 10_000, "{codec}: every record read");
        assert_matches(&published(&run.join("snapshots")), &want, codec);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A partition's log range comes from a thread of the source's own: the end
/// offset the job reports (and with it the lag) follows what a standard
/// producer writes while the source reads, and the lag falls to zero once
/// everything is read.
#[test]
fn the_reported_end_follows_what_is_produced_while_reading() {
    use popularity::core::event::Validation;
    use popularity::source::kafka::{KafkaSource, ProgressBoard};
    use popularity::source::{Batch, Source};
    let broker = Broker::with_events("ranges", 2);
    let dir = scratch("kafka-ranges");
    let (first, second) = (dir.join("first.jsonl"), dir.join("second.jsonl"));
    write_events(&first, &messy(31, 2_000), 400);
    write_events(&second, &messy(32, 3_000), 400);
    produce_file_with(&broker.addr, "events", &first, &[]);
    let job = kafka_job(&dir, &broker.addr, "events");
    let progress = ProgressBoard::default();
    let limits = Validation {
        now_ms: popularity::core::time::now_ms(),
        max_future_ms: job.source.max_future_ms(),
    };
    let mut source = KafkaSource::open(
        &job.source.kafka,
        "ranges",
        0,
        1,
        &BTreeMap::new(),
        limits,
        progress.clone(),
    )
    .expect("source opens");
    let ends = |board: &ProgressBoard| -> i64 {
        let board = board.lock().expect("not poisoned");
        board.values().map(|p| p.high_watermark).sum()
    };
    let at_open = ends(&progress);
    assert!(at_open > 0, "the ends at open count the first records");
    produce_file_with(&broker.addr, "events", &second, &[]);
    let (mut batch, mut read) = (Batch::default(), 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let lag = |board: &ProgressBoard| -> i64 {
        let board = board.lock().expect("not poisoned");
        board.values().map(|p| p.lag()).sum()
    };
    while read < 5_000 || ends(&progress) <= at_open || lag(&progress) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "read {read} of 5000; reported ends {} (at open {at_open}), lag {}",
            ends(&progress),
            lag(&progress)
        );
        batch.clear();
        source.poll(&mut batch, 1_000).expect("poll");
        read += batch.read;
    }
    assert_eq!(read, 5_000, "every record read once");
    let _ = std::fs::remove_dir_all(&dir);
}
