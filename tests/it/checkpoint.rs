//! Checkpoints and exact recovery, against a real broker (and Garage).
//!
//! Each scenario runs the job over a topic with interruptions (kill -9 at
//! random moments, a graceful stop and a restart on another layout,
//! corrupted checkpoints) and compares every published object byte for byte
//! with an uninterrupted run over the same topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::common::*;
use popularity::config::GeneratorConfig;
use popularity::sink::store::{LocalStore, ObjectStore};

/// Writes a job file reading `topic` and writing to `sink` (TOML for the [sink] table).
fn job_file(dir: &Path, name: &str, broker: &Broker, topic: &str, sink: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[job]\nname = \"{name}\"\n[source]\nkind = \"kafka\"\nbatch = 2000\n[source.kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\ndead-letter-topic = \"{topic}-dlq\"\nuntil = \"idle\"\nidle-timeout = \"4s\"\n[catalog]\ntitles = 400\n[checkpoint]\ninterval = \"500ms\"\nkeep = 3\n{sink}\n",
            broker.addr
        ),
    )
    .expect("job file");
    path
}

fn local_sink(root: &Path) -> String {
    format!("[sink]\nkind = \"local\"\npath = \"{}\"\n", root.display())
}

/// Waits for a job and returns how many records it read (from its summary line).
fn finish(child: Child) -> u64 {
    records_read(&wait_bounded(child, Duration::from_secs(300), "job"))
}

/// Every object of the model's tables: key → bytes.
fn model_objects(store: &dyn ObjectStore) -> BTreeMap<String, Vec<u8>> {
    objects_under(
        store,
        &["title_measures/", "shows/", "channels/", "trending/"],
    )
}

fn checkpoint_ids(root: &Path, job: &str) -> Vec<u64> {
    let store = LocalStore::new(root).expect("store");
    popularity::checkpoint::Checkpoints::new(&store, job)
        .complete()
        .expect("list checkpoints")
}

#[test]
fn killed_ten_times_while_producing_gives_identical_hours() {
    let s3 = S3::start("crash");
    s3.bucket("popularity");
    let broker = Broker::with_events("crash", 3);
    let dir = scratch("crash");
    let s3_sink = |prefix: &str| {
        format!(
            "[sink]\nkind = \"s3\"\n[sink.s3]\nbucket = \"popularity\"\nprefix = \"{prefix}\"\nregion = \"garage\"\nendpoint = \"{}\"\npath-style = true\naccess-key-id = \"{S3_KEY_ID}\"\nsecret-access-key = \"{S3_SECRET}\"\n",
            s3.endpoint
        )
    };
    let cfg = messy(41, 120_000);
    let g = generator(&cfg);
    let producer = {
        let addr = broker.addr.clone();
        let g = generator(&cfg);
        std::thread::spawn(move || {
            produce_at_rate(&addr, "events", &g, 0..120_000, 8_000.0);
        })
    };
    let job = job_file(&dir, "crashy", &broker, "events", &s3_sink("crashy"));
    let mut rng = popularity::core::rng::SplitMix64::new(7);
    for _ in 0..10 {
        let mut child = spawn_job(&job, &["-w", "2"]);
        std::thread::sleep(Duration::from_millis(700 + rng.below(1500)));
        child.kill().expect("kill -9");
        let _ = child.wait();
    }
    producer.join().expect("producer");
    let read = run_to_end(&job, &["-w", "2"]);
    assert!(
        read < 120_000,
        "the last run resumed from a checkpoint (read {read} of 120000)"
    );
    // The reference: one uninterrupted run over the whole topic.
    let reference = job_file(&dir, "reference", &broker, "events", &s3_sink("reference"));
    run_to_end(&reference, &["-w", "2"]);
    let crashy_cfg = s3.config("popularity", "crashy");
    let reference_cfg = s3.config("popularity", "reference");
    let crashy = popularity::sink::s3::S3Store::connect(&crashy_cfg).expect("connect");
    let refs = popularity::sink::s3::S3Store::connect(&reference_cfg).expect("connect");
    assert_identical(
        &snapshot_objects(&crashy),
        &snapshot_objects(&refs),
        "killed 10 times",
    );
    // The model (measures, rollups, 24-hour scores, rankings) comes back exactly too.
    assert_identical(
        &model_objects(&crashy),
        &model_objects(&refs),
        "killed 10 times, model tables",
    );
    assert!(
        !crashy.list("checkpoints/crashy/").expect("list").is_empty(),
        "checkpoints were taken"
    );
    let _ = g;
    let _ = std::fs::remove_dir_all(&dir);
}

fn terminate(child: Child) -> u64 {
    sigterm(&child);
    finish(child)
}

#[test]
fn checkpoint_from_one_worker_restores_on_two_workers_and_two_processes() {
    let broker = Broker::with_events("rescale", 4);
    let dir = scratch("rescale");
    let cfg = messy(42, 80_000);
    let g = generator(&cfg);
    produce_at_rate(&broker.addr, "events", &g, 0..40_000, 0.0);
    let mut stopped_hours = Vec::new();
    for (name, layout) in [("two-workers", vec!["-w", "2"]), ("two-processes", vec![])] {
        let root = dir.join(name);
        let job = job_file(&dir, name, &broker, "events", &local_sink(&root));
        // First half with one worker, stopped gracefully: SIGTERM → final checkpoint → exit 0.
        let child = spawn_job(&job, &["-w", "1"]);
        std::thread::sleep(Duration::from_secs(3));
        let read = terminate(child);
        assert!(read > 0, "{name}: the first run read something ({read})");
        assert!(
            !checkpoint_ids(&root, name).is_empty(),
            "{name}: the stop left a checkpoint"
        );
        // A stop is not the end of the stream: only finished hours may be out.
        stopped_hours.push((
            name,
            hours_of(&snapshot_objects(&LocalStore::new(&root).expect("store"))),
        ));
        if name == "two-workers" {
            produce_at_rate(&broker.addr, "events", &g, 40_000..80_000, 0.0);
        }
        if layout.is_empty() {
            let read: u64 = run_cluster_to_end(&job, &dir, 2, 1).into_iter().sum();
            assert!(
                read < 40_000,
                "{name}: resumed from the checkpoint (read {read})"
            );
        } else {
            let read = run_to_end(&job, &layout);
            assert!(
                read < 80_000,
                "{name}: resumed from the checkpoint (read {read})"
            );
        }
    }
    let reference_root = dir.join("reference");
    run_to_end(
        &job_file(
            &dir,
            "reference",
            &broker,
            "events",
            &local_sink(&reference_root),
        ),
        &["-w", "1"],
    );
    let want = snapshot_objects(&LocalStore::new(&reference_root).expect("store"));
    for name in ["two-workers", "two-processes"] {
        let got = snapshot_objects(&LocalStore::new(&dir.join(name)).expect("store"));
        // Part files are per worker, so compare hour contents rather than file names.
        assert_eq!(
            hours_of(&got),
            hours_of(&want),
            "{name}: restored on another layout"
        );
    }
    let reference = hours_of(&want);
    for (name, hours) in stopped_hours {
        assert!(
            !hours.is_empty(),
            "{name}: the stopped run had published finished hours"
        );
        for (hour, rows) in hours {
            assert_eq!(
                Some(&rows),
                reference.get(&hour),
                "{name}: the stopped run published {hour} unfinished"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_or_incomplete_newest_checkpoint_falls_back_to_the_previous() {
    let broker = Broker::with_events("corrupt", 2);
    let dir = scratch("corrupt");
    let cfg = messy(43, 60_000);
    // The topic fills while the first run reads, so its checkpoints sit at different offsets.
    for damage in ["flip", "truncate", "no-manifest"] {
        let topic = format!("events-{damage}");
        broker.topic(&topic, 2);
        broker.topic(&format!("{topic}-dlq"), 1);
        let root = dir.join(damage);
        let job = job_file(&dir, damage, &broker, &topic, &local_sink(&root));
        let producer = {
            let addr = broker.addr.clone();
            let g = generator(&cfg);
            let topic = topic.clone();
            std::thread::spawn(move || produce_at_rate(&addr, &topic, &g, 0..60_000, 10_000.0))
        };
        let mut child = spawn_job(&job, &["-w", "2"]);
        let store = LocalStore::new(&root).expect("store");
        let waited = std::time::Instant::now();
        // Wait until the fallback (second newest) checkpoint has read something, so resuming from it shows.
        let progressed = |root: &Path| {
            let ids = checkpoint_ids(root, damage);
            let store = LocalStore::new(root).expect("store");
            ids.len() >= 2
                && popularity::checkpoint::Checkpoints::new(&store, damage)
                    .load(ids[1])
                    .map(|(_, ledgers)| ledgers.iter().map(|(_, l)| l.next_offset).sum::<i64>() > 0)
                    .unwrap_or(false)
        };
        while !progressed(&root) && waited.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        producer.join().expect("producer");
        let ids = checkpoint_ids(&root, damage);
        assert!(
            ids.len() >= 2,
            "{damage}: two checkpoints to choose from, got {ids:?}"
        );
        let newest = format!("checkpoints/{damage}/{:020}", ids[0]);
        let part = format!("{newest}/part-00000.ckpt");
        let mut bytes = store.get(&part).expect("get").expect("part exists");
        match damage {
            "flip" => {
                let at = bytes.len() / 2;
                bytes[at] ^= 0xff;
                store.put(&part, &bytes).expect("put");
            }
            "truncate" => store.put(&part, &bytes[..bytes.len() - 7]).expect("put"),
            _ => store.delete(&format!("{newest}/MANIFEST")).expect("delete"),
        }
        let read = run_to_end(&job, &["-w", "2"]);
        assert!(
            read < 60_000,
            "{damage}: resumed from the previous checkpoint (read {read})"
        );
        let reference_root = dir.join(format!("reference-{damage}"));
        run_to_end(
            &job_file(
                &dir,
                &format!("reference-{damage}"),
                &broker,
                &topic,
                &local_sink(&reference_root),
            ),
            &["-w", "2"],
        );
        let want = snapshot_objects(&LocalStore::new(&reference_root).expect("store"));
        assert_identical(&snapshot_objects(&store), &want, damage);
        let want = model_objects(&LocalStore::new(&reference_root).expect("store"));
        assert_identical(
            &model_objects(&store),
            &want,
            &format!("{damage}, model tables"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Produces `cfg`'s events into `events` at 8 000 a second, on a thread.
fn produce_paced(broker: &Broker, cfg: GeneratorConfig) -> std::thread::JoinHandle<()> {
    let addr = broker.addr.clone();
    let g = generator(&cfg);
    let n = cfg.events;
    std::thread::spawn(move || produce_at_rate(&addr, "events", &g, 0..n, 8_000.0))
}

/// Asserts the hours under `root` equal those of one uninterrupted run
/// (two workers) over the same topic.
fn assert_hours_as_uninterrupted(dir: &Path, broker: &Broker, root: &Path, what: &str) {
    let reference_root = dir.join("reference");
    let sink = local_sink(&reference_root);
    run_to_end(
        &job_file(dir, "reference", broker, "events", &sink),
        &["-w", "2"],
    );
    let want = snapshot_objects(&LocalStore::new(&reference_root).expect("store"));
    let got = snapshot_objects(&LocalStore::new(root).expect("store"));
    assert_eq!(hours_of(&got), hours_of(&want), "{what}");
}

#[test]
fn killing_one_process_of_a_cluster_ten_times_gives_identical_hours() {
    let broker = Broker::with_events("cluster-crash", 4);
    let dir = scratch("cluster-crash");
    let producer = produce_paced(&broker, messy(44, 100_000));
    let root = dir.join("crashy");
    let job = job_file(&dir, "crashy", &broker, "events", &local_sink(&root));
    let mut rng = popularity::core::rng::SplitMix64::new(11);
    for round in 0..10 {
        let mut procs = spawn_cluster(&job, &hostfile(&dir, 2), 2, 1);
        std::thread::sleep(Duration::from_millis(1000 + rng.below(1500)));
        // Kill one process; its peer loses the connection and goes down too (or is taken down).
        let victim = round % 2;
        procs[victim].kill().expect("kill -9");
        let _ = procs[victim].wait();
        let survivor = &mut procs[1 - victim];
        let waited = std::time::Instant::now();
        while survivor.try_wait().expect("poll").is_none()
            && waited.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = survivor.kill();
        let _ = survivor.wait();
    }
    producer.join().expect("producer");
    let read = run_to_end(&job, &["-w", "2"]);
    assert!(
        read < 100_000,
        "the last run resumed from a checkpoint (read {read} of 100000)"
    );
    assert_hours_as_uninterrupted(&dir, &broker, &root, "cluster killed 10 times");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends SIGTERM to `child` (the `kill` command: no signal API in the tests).
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
}

/// Sleeps until the wall clock reads `ms` (milliseconds since the epoch).
fn sleep_until_ms(ms: i64) {
    let now = popularity::core::time::now_ms();
    if ms > now {
        std::thread::sleep(Duration::from_millis((ms - now) as u64));
    }
}

#[test]
fn a_cluster_stopped_across_a_checkpoint_boundary_ends_every_stop_with_one_final_checkpoint() {
    // Both processes are stopped within 80 ms, on either side of a boundary
    // of the 500 ms checkpoint interval: their clocks propose two final
    // checkpoints, and each stop must still end with status 0 on one.
    let broker = Broker::with_events("straddle", 4);
    let dir = scratch("straddle");
    let producer = produce_paced(&broker, messy(45, 60_000));
    let root = dir.join("straddle");
    let job = job_file(&dir, "straddle", &broker, "events", &local_sink(&root));
    let mut followed = 0;
    for round in 0..5 {
        // Info lines name the final checkpoints. NO_COLOR empty (unset, as
        // far as it goes): a log that is not a terminal must be plain lines
        // by itself.
        let env = [("POPULARITY_LOG", "info"), ("NO_COLOR", "")];
        let procs = spawn_cluster_with(&job, &hostfile(&dir, 2), 2, 1, &env);
        std::thread::sleep(Duration::from_millis(3000));
        let boundary = (popularity::core::time::now_ms() / 500 + 1) * 500;
        let (early, late) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        sleep_until_ms(boundary - 60);
        sigterm(&procs[early]);
        sleep_until_ms(boundary + 20);
        sigterm(&procs[late]);
        let outs = wait_group(procs, Duration::from_secs(90), "a stopped cluster");
        let mut finals = Vec::new();
        for (k, out) in outs.iter().enumerate() {
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "round {round}, process {k}: {}",
                tail(&log, 15)
            );
            assert!(!log.contains('\u{1b}'), "colour codes in a piped log");
            let done = log
                .lines()
                .rfind(|l| l.contains("final checkpoint complete"))
                .unwrap_or_else(|| panic!("round {round}, process {k}: {}", tail(&log, 15)));
            let id = done
                .split("checkpoint=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next());
            finals.push(id.map(str::to_string));
            followed += usize::from(log.contains("stopped at a newer final checkpoint"));
        }
        assert!(finals[0].is_some(), "round {round}: {finals:?}");
        assert_eq!(finals[0], finals[1], "round {round}: one final checkpoint");
    }
    println!("processes that followed a peer's newer final checkpoint: {followed} of 10");
    producer.join().expect("producer");
    let read = run_to_end(&job, &["-w", "2"]);
    assert!(
        read < 60_000,
        "the last run resumed from a checkpoint (read {read})"
    );
    assert_hours_as_uninterrupted(&dir, &broker, &root, "stopped 5 times across boundaries");
    let _ = std::fs::remove_dir_all(&dir);
}
