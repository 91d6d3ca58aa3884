//! Kafka as production runs it, against a real broker and a standard client
//! (Python `confluent-kafka`) this project did not write: a record too large
//! for the dead-letter topic, a dead-letter topic that takes nothing, a
//! crash right after a checkpoint, a topic recreated between runs, and a
//! broker reached only over TLS.
//!
//! Partitions added while the job runs are not tested here: the test broker
//! cannot add partitions to a topic, and recreating a topic while clients
//! are connected crashes librdkafka 2.12.1 in its metadata cache.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::oracle::{recount_hourly, Expected};
use crate::common::*;
use popularity::checkpoint::Checkpoints;
use popularity::sink::store::LocalStore;
use popularity::source::kafka::OnLostOffsets;

/// One record as the standard client read it.
#[derive(serde::Deserialize, Debug)]
struct Read {
    partition: i32,
    offset: i64,
    headers: BTreeMap<String, String>,
    size: usize,
    value: String,
}

/// Every record of `topic`, read with the standard client.
fn consume(brokers: &str, topic: &str) -> Vec<Read> {
    consume_with(brokers, topic, &[])
}

/// Every record of `topic`, read with the standard client configured with `extra` (`key=value`).
fn consume_with(brokers: &str, topic: &str, extra: &[String]) -> Vec<Read> {
    let out = run_ok(
        Command::new("python3")
            .arg(script("consume.py"))
            .args([brokers, topic, "3"])
            .args(extra),
        &format!("reading {topic}"),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Produces a JSON-lines file with the standard client.
fn produce_file(brokers: &str, topic: &str, path: &Path) {
    produce_file_with(brokers, topic, path, &[])
}

/// The topic's records by partition (payloads in offset order), as the standard client reads them.
fn partitions_of(brokers: &str, topic: &str) -> Vec<Vec<Vec<u8>>> {
    partitions_with(brokers, topic, &[])
}

fn partitions_with(brokers: &str, topic: &str, extra: &[String]) -> Vec<Vec<Vec<u8>>> {
    let mut by: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for r in consume_with(brokers, topic, extra) {
        by.entry(r.partition)
            .or_default()
            .push((r.offset, r.value.into_bytes()));
    }
    by.into_values()
        .map(|mut rs| {
            rs.sort();
            rs.into_iter().map(|r| r.1).collect()
        })
        .collect()
}

fn hourly(parts: &[Vec<Vec<u8>>]) -> Expected {
    recount_hourly(parts)
}

fn delete_topic(broker: &Broker, name: &str) {
    run_ok(
        Command::new("bash").arg(script("kafka.sh")).args([
            "delete",
            name,
            "--port",
            &broker.port.to_string(),
        ]),
        "topic delete failed",
    );
}

/// A clean stream (no disorder, lateness or junk) starting at `start`.
fn clean(seed: u64, events: u64, start: &str) -> popularity::source::traffic::GeneratorConfig {
    popularity::source::traffic::GeneratorConfig {
        events,
        seed,
        titles: 400,
        time_rate: 4.0,
        out_of_order: 0.0,
        late: 0.0,
        invalid: 0.0,
        start: start.into(),
        ..Default::default()
    }
}

/// The error a job stops with at start.
fn start_error(job: popularity::config::JobConfig, why: &str) -> popularity::core::error::Error {
    let ctx = Arc::new(popularity::job::Context::from_job(job).expect("valid job"));
    popularity::job::execute(timely::Config::thread(), ctx).expect_err(why)
}

/// Published hours (hours since the epoch) starting at or after `from` (ms).
fn hours_from(root: &Path, from: i64) -> BTreeMap<u64, BTreeMap<u64, i64>> {
    published(root)
        .into_iter()
        .filter(|(hour, _)| (*hour as i64) * 3_600_000 >= from)
        .collect()
}

#[test]
fn a_record_too_large_for_the_dead_letter_topic_is_truncated_and_a_rerun_agrees() {
    let broker = Broker::with_events("poison", 2);
    let dir = scratch("kafka-poison");
    let events = dir.join("events.jsonl");
    write_events(&events, &messy(31, 9_999), 400);
    let mut text = std::fs::read_to_string(&events).expect("events");
    let huge = "x".repeat(600_000);
    text.push_str(&format!(
        "{{\"event_id\":1,\"user_id\":2,\"content_id\":3,\"event_type\":\"started_video\",\"event_time\":1700000000000,\"watched_ms\":0,\"region\":\"{huge}\",\"tier\":\"free\",\"device\":\"tv\"}}\n"
    ));
    std::fs::write(&events, text).expect("events");
    produce_file(&broker.addr, "events", &events);
    let parts = partitions_of(&broker.addr, "events");
    let want = hourly(&parts);
    let mut job = kafka_job(&dir, &broker.addr, "events");
    job.source.kafka.dead_letter_max_bytes = 256 * 1024;
    job.sink.path = dir.join("store");
    job.checkpoint.interval = Duration::from_millis(300);
    let first = run_in_process(job.clone(), 2);
    assert_eq!(first.read, 10_000, "every record read");
    assert_eq!(first.dead_lettered as usize, want.rejected.len());
    assert_matches(&published(&dir.join("store")), &want, "poison record");
    let letters = consume(&broker.addr, "events-dlq");
    assert_eq!(
        letters.len(),
        want.rejected.len(),
        "one letter per rejected record"
    );
    let big: Vec<&Read> = letters
        .iter()
        .filter(|l| l.headers.get("truncated").map(String::as_str) == Some("true"))
        .collect();
    assert_eq!(big.len(), 1, "exactly the large record is truncated");
    let h = &big[0].headers;
    let original: usize = h["original-size"].parse().expect("original size");
    assert!(original > 600_000, "original size {original}");
    assert!(big[0].size < 256 * 1024, "payload fits: {}", big[0].size);
    assert!(!h["reason"].is_empty(), "a reason");
    assert!(
        h["detail"].len() <= 1024,
        "detail bounded: {}",
        h["detail"].len()
    );
    let (p, o): (i32, i64) = (
        h["source-partition"].parse().expect("partition"),
        h["source-offset"].parse().expect("offset"),
    );
    let located = consume(&broker.addr, "events")
        .into_iter()
        .find(|r| r.partition == p && r.offset == o)
        .expect("the letter points at a record");
    assert_eq!(
        located.size, original,
        "partition and offset of the large record"
    );
    assert!(!dir.join("dead-letters").exists(), "nothing spooled");

    let second = run_in_process(job, 2);
    assert_eq!(second.read, 0, "the rerun starts from the checkpoint");
    assert_matches(&published(&dir.join("store")), &want, "rerun");
    assert_eq!(consume(&broker.addr, "events-dlq").len(), letters.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dead_letters_the_topic_does_not_take_are_spooled_and_counted() {
    let broker = Broker::start("spool");
    broker.topic("events", 2);
    let dir = scratch("kafka-spool");
    let events = dir.join("events.jsonl");
    write_events(&events, &messy(32, 5_000), 400);
    produce_file(&broker.addr, "events", &events);
    let want = hourly(&partitions_of(&broker.addr, "events"));
    let mut job = kafka_job(&dir, &broker.addr, "events");
    job.source.kafka.dead_letter_topic = "no such topic!".into();
    job.source.kafka.dead_letter_timeout = Duration::from_secs(2);
    let before = popularity::source::kafka::undeliverable();
    let stats = run_in_process(job, 2);
    assert_eq!(stats.read, 5_000);
    assert_matches(&published(&dir.join("snapshots")), &want, "spooled run");
    let mut spooled = Vec::new();
    for entry in std::fs::read_dir(dir.join("dead-letters")).expect("spool directory") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("spool");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            assert!(!v["error"].as_str().unwrap_or("").is_empty(), "why: {v}");
            spooled.push((
                v["partition"].as_str().unwrap_or("").to_string(),
                v["position"]
                    .as_str()
                    .unwrap_or("")
                    .parse::<usize>()
                    .expect("offset"),
                v["reason"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    assert!(!want.rejected.is_empty());
    assert_eq!(spooled.len(), want.rejected.len(), "every letter spooled");
    let mut spooled: Vec<(usize, usize, String)> = spooled
        .into_iter()
        .map(|(p, o, r)| (p.parse().expect("partition"), o, r))
        .collect();
    spooled.sort();
    let mut expected = want.rejected.clone();
    expected.sort();
    assert_eq!(
        spooled, expected,
        "the spool holds exactly the rejected records"
    );
    assert!(popularity::source::kafka::undeliverable() - before >= expected.len() as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_right_after_a_checkpoint_every_earlier_rejected_record_is_a_dead_letter() {
    let broker = Broker::with_events("kill-dlq", 2);
    let dir = scratch("kafka-kill-dlq");
    let events = dir.join("events.jsonl");
    let mut cfg = messy(33, 60_000);
    cfg.invalid = 0.05;
    write_events(&events, &cfg, 400);
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[job]\nname = \"kill\"\n[source]\nkind = \"kafka\"\nbatch = 500\n[source.kafka]\nbrokers = \"{}\"\ntopic = \"events\"\ndead-letter-topic = \"events-dlq\"\n[source.kafka.properties]\n\"linger.ms\" = \"3000\"\n[catalog]\ntitles = 400\n[checkpoint]\ninterval = \"700ms\"\n[sink]\nkind = \"local\"\npath = \"{}\"\n[dead-letter]\npath = \"{}\"\n",
            broker.addr,
            dir.join("store").display(),
            dir.join("spool").display()
        ),
    )
    .expect("job file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_popularity"))
        .args(["run", "--job"])
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn job");
    // Records keep arriving while the job checkpoints.
    let producer = {
        let (addr, events) = (broker.addr.clone(), events.clone());
        std::thread::spawn(move || {
            Command::new("python3")
                .arg(script("produce.py"))
                .args([&addr, "events", "none"])
                .arg(&events)
                .arg("linger.ms=50")
                .output()
                .expect("python3 runs")
        })
    };
    let store = LocalStore::new(&dir.join("store")).expect("store");
    let checkpoints = Checkpoints::new(&store, "kill");
    let started = Instant::now();
    loop {
        if checkpoints.complete().unwrap_or_default().len() >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoints"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(producer.join().expect("producer").status.success());
    let (manifest, ledgers) = checkpoints
        .latest_valid()
        .expect("checkpoints")
        .expect("a checkpoint");
    let next: BTreeMap<i32, i64> = ledgers
        .iter()
        .map(|(p, l)| (*p as i32, l.next_offset))
        .collect();
    let letters: BTreeSet<(i32, i64)> = consume(&broker.addr, "events-dlq")
        .iter()
        .map(|l| {
            (
                l.headers["source-partition"].parse().expect("partition"),
                l.headers["source-offset"].parse().expect("offset"),
            )
        })
        .collect();
    let mut covered = 0;
    for r in consume(&broker.addr, "events") {
        let bad =
            popularity::core::event::WatchEvent::decode(r.value.as_bytes(), &limits()).is_err();
        if bad && next.get(&r.partition).is_some_and(|n| r.offset < *n) {
            covered += 1;
            assert!(
                letters.contains(&(r.partition, r.offset)),
                "rejected record {}@{} is before checkpoint {}'s offsets {next:?} but not in the dead-letter topic",
                r.partition,
                r.offset,
                manifest.id
            );
        }
    }
    assert!(
        covered > 50,
        "the checkpoint covered rejected records: {covered}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_topic_recreated_between_runs_fails_by_default_and_is_read_with_earliest() {
    let broker = Broker::with_events("recreated", 4);
    let dir = scratch("kafka-recreated");
    let (old, new) = (dir.join("old.jsonl"), dir.join("new.jsonl"));
    write_events(&old, &clean(34, 10_000, "2026-03-01T00:00:00Z"), 400);
    write_events(&new, &clean(35, 5_000, "2026-03-03T00:00:00Z"), 400);
    produce_file(&broker.addr, "events", &old);
    let mut job = kafka_job(&dir, &broker.addr, "events");
    job.sink.path = dir.join("store");
    job.checkpoint.interval = Duration::from_millis(300);
    assert_eq!(run_in_process(job.clone(), 2).read, 10_000);

    delete_topic(&broker, "events");
    broker.topic("events", 4);
    produce_file(&broker.addr, "events", &new);
    // As an operator sees it: the process, its exit code and its words.
    let mut process_job = job.clone();
    process_job.metrics.listen = "127.0.0.1:0".into();
    let job_file = dir.join("job.toml");
    std::fs::write(
        &job_file,
        toml::to_string(&process_job).expect("job as TOML"),
    )
    .expect("job file");
    let out = Command::new(env!("CARGO_BIN_EXE_popularity"))
        .args(["run", "--job"])
        .arg(&job_file)
        .args(["-w", "2"])
        .output()
        .expect("run the job");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(69),
        "an external system's fault: {text}"
    );
    for part in [
        "topic `events` partition",
        "is not in the partition's log",
        "on-lost-offsets",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    assert!(!text.contains("bug"), "not a bug: {text}");

    job.source.kafka.on_lost_offsets = OnLostOffsets::Earliest;
    let ctx = Arc::new(popularity::job::Context::from_job(job).expect("valid job"));
    let board = ctx.kafka_progress.clone();
    let stats = popularity::job::execute(timely::Config::process(2), ctx).expect("runs");
    assert_eq!(stats.read, 5_000, "the new records are read");
    let lost: u64 = board.lock().expect("board").values().map(|p| p.lost).sum();
    // What vanished from the logs' ends, by the end offsets the broker reports
    // (this one reports them short, so the count is at least the true one).
    assert!(
        (5_000..=10_000).contains(&lost),
        "offsets counted as lost: {lost}"
    );
    let want = hourly(&partitions_of(&broker.addr, "events"));
    let from = popularity::core::time::parse_rfc3339("2026-03-03T00:00:00Z").expect("time");
    assert_matches(
        &hours_from(&dir.join("store"), from),
        &want,
        "recreated topic",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broker_behind_tls_is_read_with_verification_and_a_wrong_ca_is_a_configuration_error() {
    let tls_port = free_port();
    let tls_addr = format!("127.0.0.1:{tls_port}");
    // Clients are told (in metadata) to come back through the TLS port.
    let broker = Broker::start_with(
        "tls",
        None,
        vec![("KAFKA_ADVERTISE".into(), tls_addr.clone())],
    );
    broker.topic("events", 2);
    broker.topic("events-dlq", 1);
    let dir = scratch("kafka-tls");
    let pki = dir.join("pki");
    make_pki(&pki);
    let proxy = TlsProxy::start(&pki, tls_port, broker.port);
    let tls = |ca: &str| {
        vec![
            "security.protocol=ssl".to_string(),
            format!("ssl.ca.location={}", pki.join(ca).display()),
        ]
    };
    let events = dir.join("events.jsonl");
    write_events(&events, &messy(38, 8_000), 400);
    produce_file_with(&tls_addr, "events", &events, &tls("ca.pem"));
    let parts = partitions_with(&tls_addr, "events", &tls("ca.pem"));
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 8_000);
    let want = hourly(&parts);
    let job_with = |ca: &str| {
        let mut job = kafka_job(&dir, &tls_addr, "events");
        let props = &mut job.source.kafka.properties;
        props.insert("security.protocol".into(), "ssl".into());
        props.insert("ssl.ca.location".into(), pki.join(ca).display().to_string());
        job
    };
    let stats = run_in_process(job_with("ca.pem"), 2);
    assert_eq!(stats.read, 8_000, "every record read over TLS");
    assert_matches(&published(&dir.join("snapshots")), &want, "over TLS");
    let letters = consume_with(&tls_addr, "events-dlq", &tls("ca.pem"));
    assert_eq!(letters.len(), want.rejected.len(), "dead letters over TLS");

    let mut wrong = job_with("other-ca.pem");
    wrong.source.kafka.connect_attempts = 3;
    wrong.source.kafka.connect_backoff = Duration::from_millis(500);
    let started = Instant::now();
    let err = start_error(wrong, "wrong CA");
    assert!(
        matches!(err, popularity::core::error::Error::Config(_)),
        "a configuration error: {err}"
    );
    assert!(err.to_string().contains("TLS"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fails at start"
    );

    let mut missing = job_with("no-such-ca.pem");
    missing.source.kafka.connect_attempts = 1;
    let err = start_error(missing, "no CA file");
    assert!(
        matches!(err, popularity::core::error::Error::Config(_)),
        "an unreadable CA file is a configuration error: {err}"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sasl_settings_reach_the_client_and_a_refusal_is_a_configuration_error() {
    // The test broker requires SCRAM when asked to, but cannot keep a user
    // it accepts; its refusal shows the mechanism, user and password (from
    // the environment, through secret-properties) reached the client.
    let broker = Broker::start_with(
        "sasl",
        None,
        vec![("KAFKA_AUTHENTICATION".into(), "1".into())],
    );
    let dir = scratch("kafka-sasl");
    let mut job = kafka_job(&dir, &broker.addr, "events");
    let k = &mut job.source.kafka;
    k.connect_attempts = 3;
    k.connect_backoff = Duration::from_millis(300);
    for (key, value) in [
        ("security.protocol", "sasl_plaintext"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "popularity"),
    ] {
        k.properties.insert(key.into(), value.into());
    }
    k.secret_properties.insert(
        "sasl.password".into(),
        "POPULARITY_TEST_SASL_PASSWORD".into(),
    );
    let err = start_error(job.clone(), "no password");
    assert!(
        err.to_string().contains("POPULARITY_TEST_SASL_PASSWORD"),
        "a missing secret names its variable: {err}"
    );
    // The password reaches the job as an operator gives it, in the process's
    // environment: setting it in this (threaded) test process would race
    // the C library's readers of the environment in other tests' clients.
    job.metrics.listen = "127.0.0.1:0".into();
    let job_file = dir.join("job.toml");
    std::fs::write(&job_file, toml::to_string(&job).expect("job as TOML")).expect("job file");
    let started = Instant::now();
    let env = [("POPULARITY_TEST_SASL_PASSWORD", "not-this-one")];
    let out = wait_each(
        vec![spawn_job_with(&job_file, &[], &env)],
        Duration::from_secs(120),
    )
    .remove(0)
    .expect("the job with a refused password ends by itself");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "a configuration error: {text}");
    assert!(text.contains("SASL") && text.contains("SCRAM"), "{text}");
    assert!(
        !text.contains("not-this-one"),
        "the password is never shown: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fails at start"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
