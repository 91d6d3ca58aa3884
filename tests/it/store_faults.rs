//! Stores that fail, stall or go away, against a real broker and a real
//! store (Garage, or the local file system): the job survives outages,
//! stops within its bound, and never publishes a partial hour.
//!
//! Events go in through the standard Kafka client (`scripts/produce.py`)
//! as well as the job's own producer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use popularity::checkpoint::Checkpoints;
use popularity::sink::s3::S3Store;
use popularity::sink::store::{LocalStore, ObjectStore};
use popularity::source::traffic::{GenItem, Generator};

/// How long the store stays away in the outage test: as long as an S3
/// regional outage that used to kill the job about five minutes in
/// (`POPULARITY_TEST_OUTAGE_S` shortens it while working on the test).
fn outage() -> Duration {
    let secs = std::env::var("POPULARITY_TEST_OUTAGE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

fn s3_sink(s3: &S3, prefix: &str) -> String {
    format!(
        "[sink]\nkind = \"s3\"\n[sink.s3]\nbucket = \"popularity\"\nprefix = \"{prefix}\"\nregion = \"garage\"\nendpoint = \"{}\"\npath-style = true\naccess-key-id = \"{S3_KEY_ID}\"\nsecret-access-key = \"{S3_SECRET}\"\nread-timeout = \"3s\"\nattempt-timeout = \"5s\"\noperation-timeout = \"10s\"\n",
        s3.endpoint
    )
}

/// A job file reading `events` until it has been idle for `idle`, with
/// checkpoints every second.
fn job_file(dir: &Path, name: &str, broker: &Broker, idle: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[job]\nname = \"{name}\"\n[source]\nkind = \"kafka\"\nbatch = 2000\n[source.kafka]\nbrokers = \"{}\"\ntopic = \"events\"\ndead-letter-topic = \"events-dlq\"\nuntil = \"idle\"\nidle-timeout = \"{idle}\"\n[catalog]\ntitles = 400\n{extra}\n",
            broker.addr
        ),
    )
    .expect("job file");
    path
}

/// The events `range` of `g` as a JSON-lines file, for the standard producer.
fn events_file(dir: &Path, g: &Generator, range: std::ops::Range<u64>) -> PathBuf {
    let path = dir.join(format!("events-{}-{}.jsonl", range.start, range.end));
    std::fs::write(&path, events_text(g, range)).expect("events file");
    path
}

/// Produces a file to `events` with the standard client (confluent-kafka).
fn produce_standard(broker: &Broker, path: &Path) {
    produce_file_with(&broker.addr, "events", path, &[]);
}

/// Produces `range` of `g` at `rate` events/s with the job's own producer, on a thread.
fn produce_paced(
    broker: &Broker,
    g: Generator,
    range: std::ops::Range<u64>,
    rate: f64,
) -> std::thread::JoinHandle<()> {
    let cfg = popularity::source::kafka::KafkaConfig {
        brokers: broker.addr.clone(),
        ..Default::default()
    };
    std::thread::spawn(move || {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let records = range.map(|i| match g.item(i) {
            GenItem::Event(e) => (e.user_id.to_string().into_bytes(), e.to_json().into_bytes()),
            GenItem::Malformed(s) => (b"malformed".to_vec(), s.into_bytes()),
        });
        popularity::source::kafka::produce(&cfg, "events", records, rate, &stop, |_| {})
            .expect("produce");
    })
}

const TABLES: [&str; 5] = [
    "titles/",
    "title_measures/",
    "shows/",
    "channels/",
    "trending/",
];

/// Ids of checkpoints with parts but no manifest yet, and of complete ones.
fn checkpoint_state(store: &dyn ObjectStore, job: &str) -> (Vec<u64>, Vec<u64>) {
    let mut parts: BTreeMap<u64, bool> = BTreeMap::new();
    for key in store
        .list(&format!("checkpoints/{job}/"))
        .unwrap_or_default()
    {
        let mut it = key.rsplit('/');
        let (Some(name), Some(id)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        let manifest = parts.entry(id).or_default();
        *manifest |= name == "MANIFEST";
    }
    let pending = parts
        .iter()
        .filter(|(_, m)| !**m)
        .map(|(i, _)| *i)
        .collect();
    let complete = parts.iter().filter(|(_, m)| **m).map(|(i, _)| *i).collect();
    (pending, complete)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn a_five_minute_store_outage_during_checkpoints_loses_nothing() {
    let s3 = S3::start("outage");
    s3.bucket("popularity");
    let broker = Broker::with_events("outage", 3);
    let dir = scratch("store-outage");
    let cfg = messy(51, 90_000);
    let g = generator(&cfg);
    produce_standard(&broker, &events_file(&dir, &g, 0..20_000));
    // The rest arrives paced over the whole outage, so the job never idles out.
    let rate = 70_000.0 / (outage().as_secs_f64() + 40.0);
    let producer = produce_paced(&broker, generator(&cfg), 20_000..90_000, rate);
    let ckpt = "[checkpoint]\ninterval = \"1s\"\nkeep = 3\n";
    let job = job_file(
        &dir,
        "outage",
        &broker,
        "15s",
        &format!("{ckpt}{}", s3_sink(&s3, "outage")),
    );
    // The log goes to a file: five minutes of retries would fill a pipe
    // nobody reads, and the job would block writing to it.
    let log_path = dir.join("outage.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_popularity"))
        .args(["run", "--job"])
        .arg(&job)
        .args(["-w", "2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("spawn job");
    // The outage starts while a checkpoint is pending: its parts are in,
    // its manifest is not (the writer polls every 250 ms; freezing is instant).
    let store = S3Store::connect(&s3.config("popularity", "outage")).expect("connect");
    let began = Instant::now();
    let pending = loop {
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "no checkpoint became pending"
        );
        let (pending, complete) = checkpoint_state(&store, "outage");
        if let Some(&id) = pending.last().filter(|id| complete.iter().any(|c| c < id)) {
            s3.freeze();
            break id;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!("store frozen while checkpoint {pending} was pending");
    std::thread::sleep(Duration::from_secs(10));
    s3.down();
    std::thread::sleep(outage().saturating_sub(Duration::from_secs(15)));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the job runs through the outage"
    );
    s3.up();
    let back = now_s();
    let began = Instant::now();
    loop {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "checkpoints did not resume: {}",
            tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 40)
        );
        let (_, complete) = checkpoint_state(&store, "outage");
        if complete.iter().any(|id| *id > back) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().expect("kill -9 after the outage");
    child.wait().expect("wait");
    let log = std::fs::read_to_string(&log_path).expect("the job's log");
    assert!(
        log.contains("checkpoint part not written") || log.contains("skipping this checkpoint"),
        "the outage cost checkpoints, counted: {}",
        tail(&log, 20)
    );
    assert!(!log.contains("fatal"), "nothing fatal: {}", tail(&log, 20));
    producer.join().expect("producer");
    let read = run_to_end(&job, &["-w", "2"]);
    assert!(
        read < 90_000,
        "the restart resumed from a checkpoint (read {read})"
    );
    let reference = job_file(&dir, "reference", &broker, "4s", &s3_sink(&s3, "reference"));
    run_to_end(&reference, &["-w", "2"]);
    let refs = S3Store::connect(&s3.config("popularity", "reference")).expect("connect");
    let (got, want) = (
        objects_under(&store, &TABLES),
        objects_under(&refs, &TABLES),
    );
    assert!(
        want.len() > 8,
        "the reference published enough to compare ({})",
        want.len()
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same hours"
    );
    for (k, v) in &want {
        assert!(got[k] == *v, "{k} differs from the uninterrupted run");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stop_during_an_outage_ends_within_its_bound_and_publishes_nothing_partial() {
    let s3 = S3::start("stop-outage");
    s3.bucket("popularity");
    let broker = Broker::with_events("stop-outage", 2);
    let dir = scratch("stop-outage");
    let cfg = messy(52, 200_000);
    let producer = produce_paced(&broker, generator(&cfg), 0..200_000, 5_000.0);
    let extra = format!(
        "[checkpoint]\ninterval = \"1s\"\nstop-timeout = \"5s\"\n{}",
        s3_sink(&s3, "stopping")
    );
    let job = job_file(&dir, "stopping", &broker, "30s", &extra);
    let child = spawn_job(&job, &["-w", "2"]);
    let store = S3Store::connect(&s3.config("popularity", "stopping")).expect("connect");
    let began = Instant::now();
    while checkpoint_state(&store, "stopping").1.is_empty()
        || popularity::sink::snapshot::published_hours(&store)
            .unwrap_or_default()
            .len()
            < 2
    {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no checkpoint and hours yet"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s3.down();
    std::thread::sleep(Duration::from_secs(2));
    let stopped = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    // stop-timeout 5 s, the uploaders' 10 s grace, and a margin.
    let out = wait_each(vec![child], Duration::from_secs(40))
        .remove(0)
        .expect("the stopping job ends by itself");
    let took = stopped.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("stopped in {took:?}, status {:?}", out.status);
    assert!(
        took < Duration::from_secs(30),
        "a stop in an outage ended in {took:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(69),
        "non-zero, the store's fault: {}",
        tail(&log, 10)
    );
    assert!(log.contains("final checkpoint"), "{}", tail(&log, 10));
    producer.join().expect("producer");
    s3.up();
    // Whatever hours are published are whole: every part a `_SUCCESS` lists exists, at its size.
    let mut published = 0;
    for key in store.list("").expect("list") {
        if !key.ends_with("/_SUCCESS") {
            continue;
        }
        published += 1;
        let manifest: popularity::sink::snapshot::Manifest =
            serde_json::from_slice(&store.get(&key).expect("get").expect("exists")).expect("json");
        let prefix = key.trim_end_matches("_SUCCESS");
        for part in &manifest.parts {
            let bytes = store.get(&format!("{prefix}{}", part.name)).expect("get");
            assert_eq!(
                bytes.map(|b| b.len() as u64),
                Some(part.bytes),
                "{key} lists {}",
                part.name
            );
        }
    }
    assert!(published > 0, "some hours were published before the outage");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_that_comes_up_after_the_job_is_waited_for() {
    let s3 = S3::start("late-store");
    s3.bucket("popularity");
    s3.down();
    let broker = Broker::with_events("late-store", 2);
    let dir = scratch("late-store");
    let cfg = messy(53, 30_000);
    let g = generator(&cfg);
    produce_standard(&broker, &events_file(&dir, &g, 0..30_000));
    let job = job_file(&dir, "late", &broker, "4s", &s3_sink(&s3, "late"));
    let mut child = spawn_job(&job, &["-w", "2"]);
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the job waits for the store"
    );
    s3.up();
    let out = wait_bounded(child, Duration::from_secs(180), "job");
    assert_eq!(records_read(&out), 30_000);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("cannot be reached yet"),
        "it said it was waiting: {}",
        tail(&log, 10)
    );
    let store = S3Store::connect(&s3.config("popularity", "late")).expect("connect");
    let hours = popularity::sink::snapshot::published_hours(&store).expect("hours");
    assert!(
        hours.len() >= 2,
        "hours published once the store came up: {hours:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_part_that_fails_for_good_publishes_no_hour_in_any_process() {
    let broker = Broker::with_events("bad-part", 4);
    let dir = scratch("bad-part");
    let cfg = messy(54, 60_000);
    let g = generator(&cfg);
    produce_standard(&broker, &events_file(&dir, &g, 0..60_000));
    let root = dir.join("out");
    // Worker 1's part of 2026-01-01 hour 01 cannot land: a directory holds its name.
    let blocked = root.join("titles/dt=2026-01-01/hour=01/part-00001.parquet");
    std::fs::create_dir_all(blocked.join("occupied")).expect("blocking directory");
    let sink = format!(
        "[checkpoint]\ninterval = \"500ms\"\n[sink]\nkind = \"local\"\npath = \"{}\"\n",
        root.display()
    );
    let job = job_file(&dir, "badpart", &broker, "4s", &sink);
    let procs = spawn_cluster(&job, &hostfile(&dir, 2), 2, 1);
    let outs = wait_each(procs, Duration::from_secs(120));
    let b_out = outs[1].as_ref().expect("process 1 exits by itself");
    let b_log = String::from_utf8_lossy(&b_out.stderr);
    assert!(!b_out.status.success(), "process 1 fails");
    assert!(
        b_log.contains("part-00001.parquet") && b_log.contains("hour=01"),
        "the error names the object and the hour: {}",
        tail(&b_log, 10)
    );
    assert!(
        outs[0].as_ref().is_some_and(|o| !o.status.success()),
        "process 0 does not finish as if all were well"
    );
    let store = LocalStore::new(&root).expect("store");
    let hours = popularity::sink::snapshot::published_hours(&store).expect("hours");
    let first_blocked = popularity::core::time::parse_rfc3339("2026-01-01T01:00:00Z").expect("time")
        as u64
        / 3_600_000;
    assert!(
        hours.iter().all(|h| *h < first_blocked),
        "no hour from the failed one on is published: {hours:?}"
    );
    assert!(!hours.is_empty(), "the hour before it is");
    let window = popularity::config::JobConfig::default()
        .window
        .spec()
        .expect("window");
    let cps = Checkpoints::new(&store, "badpart");
    for id in cps.complete().expect("checkpoints") {
        let (manifest, _) = cps.load(id).expect("loads");
        assert!(
            manifest.time <= window.last_pane_of_hour(first_blocked),
            "checkpoint {id} at pane {} passes the unpublished hour",
            manifest.time
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
