//! The image and the cluster as containers on their own hosts
//! (`scripts/image.sh`, `deploy/compose.yml`): three job containers of two
//! workers each, a broker container and an S3 store container on one
//! Docker network. These are the long tests; the test command runs them as
//! their own group after the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::oracle::recount;
use crate::common::*;
use popularity::sink::s3::S3Store;

/// A job file for the deployment: reads `events` until idle, publishes to
/// `prefix` in the S3 container, checkpoints every 2 s.
fn job(name: &str, prefix: &str) -> String {
    format!(
        "[job]\nname = \"{name}\"\n\
         [source]\nkind = \"kafka\"\n\
         [source.kafka]\nbrokers = \"kafka:9092\"\ntopic = \"events\"\ndead-letter-topic = \"events-dlq\"\nstart = \"earliest\"\nuntil = \"idle\"\nidle-timeout = \"8s\"\n\
         [catalog]\ntitles = 400\n\
         [sink]\nkind = \"s3\"\n\
         [sink.s3]\nbucket = \"popularity\"\nprefix = \"{prefix}\"\nregion = \"garage\"\nendpoint = \"http://garage:3900\"\npath-style = true\n\
         [checkpoint]\ninterval = \"2s\"\n"
    )
}

fn store(endpoint: &str, prefix: &str) -> S3Store {
    let cfg = popularity::sink::s3::S3Config {
        bucket: "popularity".into(),
        prefix: prefix.into(),
        region: "garage".into(),
        endpoint: Some(endpoint.into()),
        path_style: true,
        access_key_id: Some(S3_KEY_ID.into()),
        secret_access_key: Some(S3_SECRET.into()),
        ..Default::default()
    };
    S3Store::connect(&cfg).expect("connect to the S3 container")
}

/// Produces `g`'s first `total` items to `events`, a thousand at a time
/// at 2 000 a second until `done`, then the rest at full speed: the topic
/// still grows when the last crash comes, and its content never depends on
/// the timing.
fn produce_paced(
    broker: &str,
    g: &popularity::source::traffic::Generator,
    total: u64,
    done: &AtomicBool,
) {
    let mut next = 0;
    while next < total && !done.load(Ordering::Relaxed) {
        let end = (next + 1_000).min(total);
        produce_at_rate(broker, "events", g, next..end, 2_000.0);
        next = end;
    }
    produce_at_rate(broker, "events", g, next..total, 0.0);
}

/// The recount of `events` as read back from the broker.
fn recount_topic(broker: &str) -> crate::common::oracle::Expected {
    let records = read_topic(broker, "events", Duration::from_secs(2));
    let parts: Vec<Vec<Vec<u8>>> = records
        .values()
        .map(|rs| rs.iter().map(|r| r.1.clone()).collect())
        .collect();
    let spec = popularity::core::time::WindowSpec::hourly();
    recount(&parts, &spec, 120_000, &limits())
}

/// Whether `addr` answers `/readyz` with 200 now.
fn ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(sock) = addr.parse() else { return false };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /readyz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// How long until every job container answers ready again, or `None` if
/// they did not within `limit`.
fn reformed(d: &Deployment, services: &[&str], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if services.iter().all(|s| ready(&format!("{}:9464", d.ip(s)))) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn the_image_runs_unprivileged_without_a_compiler_and_the_start_script_checks_its_settings() {
    images();
    let help = docker(&["run", "--rm", "popularity:latest", "--help"]);
    assert!(
        help.status.success(),
        "--help: {}",
        String::from_utf8_lossy(&help.stderr)
    );
    assert!(String::from_utf8_lossy(&help.stdout).contains("run"));
    let id = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "id",
        "popularity:latest",
        "-u",
    ]);
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "10001");
    let cc = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "popularity:latest",
        "-c",
        "command -v cc gcc c++ rustc cargo ld",
    ]);
    assert!(
        !cc.status.success() && cc.stdout.is_empty(),
        "a compiler in the runtime: {}",
        String::from_utf8_lossy(&cc.stdout)
    );
    let size: u64 = String::from_utf8_lossy(
        &docker(&["image", "inspect", "-f", "{{.Size}}", "popularity:latest"]).stdout,
    )
    .trim()
    .parse()
    .expect("size");
    assert!(size < 250 << 20, "the image is {size} bytes");
    // The start script writes the hostfile from PEER and takes -p from the
    // hostname; a process listens on every address of its host.
    let hosts = docker(&[
        "run",
        "--rm",
        "--hostname",
        "popularity-1",
        "-e",
        "REPLICAS=3",
        "-e",
        "WORKERS=2",
        "-e",
        "PEER=popularity-{i}.popularity.ns.svc:2101",
        "--entrypoint",
        "sh",
        "popularity:latest",
        "-c",
        "popularity-start --job /nonexistent.toml; echo exit=$?; cat /cluster/hosts",
    ]);
    let text = String::from_utf8_lossy(&hosts.stdout);
    assert!(
        text.contains("popularity-0.popularity.ns.svc:2101\n0.0.0.0:2101\npopularity-2.popularity.ns.svc:2101\n"),
        "hostfile: {text}"
    );
    for (hostname, replicas, peer, want) in [
        (
            "popularity-3",
            "3",
            "p-{i}:2101",
            "ordinal 3 is not below REPLICAS=3",
        ),
        (
            "popularity",
            "3",
            "p-{i}:2101",
            "does not end in -<ordinal>",
        ),
        ("popularity-0", "3", "p-0:2101", "has no {i}"),
    ] {
        let out = docker(&[
            "run",
            "--rm",
            "--hostname",
            hostname,
            "-e",
            &format!("REPLICAS={replicas}"),
            "-e",
            "WORKERS=1",
            "-e",
            &format!("PEER={peer}"),
            "--entrypoint",
            "popularity-start",
            "popularity:latest",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{hostname}: {err}");
        assert!(
            err.contains("configuration error") && err.contains(want),
            "{hostname}: {err}"
        );
    }
}

/// A deployment with 6 partitions of `events`, the bucket, and the paced
/// producer of seeded messy traffic started.
struct Run {
    d: Deployment,
    broker: String,
    s3: String,
    done: Arc<AtomicBool>,
    producer: Option<std::thread::JoinHandle<()>>,
}

impl Run {
    fn begin(name: &str, seed: u64) -> Run {
        let d = Deployment::new(name, &job(name, name));
        let (broker, s3) = d.infra(&[("events", 6), ("events-dlq", 1)]);
        let done = Arc::new(AtomicBool::new(false));
        let producer = {
            let (broker, g, done) = (
                broker.clone(),
                generator(&messy(seed, 200_000)),
                done.clone(),
            );
            std::thread::spawn(move || produce_paced(&broker, &g, 200_000, &done))
        };
        Run {
            d,
            broker,
            s3,
            done,
            producer: Some(producer),
        }
    }

    /// Waits until `services` all answer ready; how long that took.
    fn formed(&self, services: &[&str], what: &str) -> Duration {
        reformed(&self.d, services, Duration::from_secs(120))
            .unwrap_or_else(|| panic!("{what}: the cluster did not form: {}", self.d.logs(&JOBS)))
    }

    /// Lets the rest of the events in and waits for `services` to end the run.
    fn finish(&mut self, services: &[&str]) {
        self.done.store(true, Ordering::Relaxed);
        self.producer
            .take()
            .expect("producing")
            .join()
            .expect("producer");
        let codes = self.d.wait_exited(services, Duration::from_secs(300));
        assert!(
            codes.iter().all(|c| *c == 0),
            "exit codes {codes:?}: {}",
            self.d.logs(services)
        );
    }

    /// Runs the same containers uninterrupted under another name; the run
    /// published at `prefix` must equal it, byte for byte with `same_layout`
    /// (else row for row: fewer workers write fewer parts an hour), and the
    /// recount.
    fn check(&self, prefix: &str, same_layout: bool, what: &str) {
        self.d.set_job(&job("reference", "reference"));
        self.d.up_with(&JOBS, true, &[("REPLICAS", "3")]);
        let codes = self.d.wait_exited(&JOBS, Duration::from_secs(300));
        assert_eq!(codes, vec![0, 0, 0], "reference: {}", self.d.logs(&JOBS));
        let got = snapshot_objects(&store(&self.s3, prefix));
        let reference = snapshot_objects(&store(&self.s3, "reference"));
        if same_layout {
            assert_identical(&got, &reference, what);
        } else {
            assert!(
                reference.len() > 4,
                "{what}: the reference published too little"
            );
            assert_eq!(
                hours_of(&got),
                hours_of(&reference),
                "{what}: every hour's rows"
            );
        }
        let want = recount_topic(&self.broker);
        assert_matches(&published_views(&store(&self.s3, prefix)), &want, what);
    }
}

#[test]
fn three_job_containers_crashed_ten_times_match_an_uninterrupted_run_and_the_recount() {
    let mut run = Run::begin("crashy", 71);
    run.d.up(&JOBS, false);
    let mut rng = popularity::core::rng::SplitMix64::new(17);
    let first = run.formed(&JOBS, "start");
    let mut reform = Vec::new();
    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(500 + rng.below(2_500)));
        run.d.crash(JOBS[rng.below(3) as usize]);
        reform.push(run.formed(&JOBS, &format!("crash {round}")));
    }
    run.finish(&JOBS);
    let restarts: u32 = JOBS.iter().map(|s| run.d.state(s).2).sum();
    assert!(
        restarts >= 10,
        "every crash restarted a container ({restarts} restarts)"
    );
    eprintln!("formed in {first:?}; re-formed after each crash in {reform:?}");
    run.check("crashy", true, "three containers crashed ten times");
}

/// Tags an image that differs from `popularity:latest` only by a label, as
/// the upgrade's new version.
fn next_image() -> String {
    let dir = scratch("next-image");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM popularity:latest\nLABEL popularity.release=next\n",
    )
    .expect("Dockerfile");
    let out = docker(&[
        "build",
        "-q",
        "-t",
        "popularity:next",
        &dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "build next: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(
        &docker(&["image", "inspect", "-f", "{{.Id}}", "popularity:next"]).stdout,
    )
    .trim()
    .to_string()
}

#[test]
fn a_rolling_upgrade_a_store_restart_and_a_rescale_to_two_containers_change_no_hour() {
    let mut run = Run::begin("ops", 72);
    let next = next_image();
    run.d.up(&JOBS, false);
    run.formed(&JOBS, "start");
    // Rolling upgrade, highest ordinal first as a StatefulSet rolls: each
    // container stopped with SIGTERM (final checkpoint) and replaced.
    for (i, s) in JOBS.iter().enumerate().rev() {
        std::thread::sleep(Duration::from_secs(2));
        run.d.up_with(&[s], false, &[("POPULARITY_TAG", "next")]);
        run.formed(&JOBS, &format!("upgrade of {s}"));
        let image = docker(&["inspect", "-f", "{{.Image}}", &run.d.container(JOBS[i])]);
        assert_eq!(
            String::from_utf8_lossy(&image.stdout).trim(),
            next,
            "{s} runs the new image"
        );
    }
    // The store goes away and comes back while the jobs run.
    std::thread::sleep(Duration::from_secs(2));
    run.d.restart("garage");
    run.formed(&JOBS, "store restart");
    // Rescale: all three stopped with a final checkpoint, two start from it.
    std::thread::sleep(Duration::from_secs(2));
    run.d.stop(&JOBS);
    let codes: Vec<i32> = JOBS.iter().map(|s| run.d.state(s).1).collect();
    assert_eq!(
        codes,
        vec![0, 0, 0],
        "a SIGTERM ends each with a final checkpoint: {}",
        run.d.logs(&JOBS)
    );
    let two = &JOBS[..2];
    run.d
        .up_with(two, false, &[("POPULARITY_TAG", "next"), ("REPLICAS", "2")]);
    run.formed(two, "two containers");
    std::thread::sleep(Duration::from_secs(3));
    run.finish(two);
    run.check(
        "ops",
        false,
        "rolling upgrade, store restart, rescale 3 to 2",
    );
}

#[test]
fn a_job_container_cut_off_for_30_s_publishes_no_wrong_hour_and_the_run_ends_exact() {
    let mut run = Run::begin("cutoff", 73);
    run.d.up(&JOBS, false);
    run.formed(&JOBS, "start");
    std::thread::sleep(Duration::from_secs(3));
    let before: u32 = JOBS.iter().map(|s| run.d.state(s).2).sum();
    run.d.cut_off("popularity-1");
    let cut = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    let cut_for = cut.elapsed();
    // Meanwhile the peers gave up on it (job.heartbeat-timeout, 20 s) and exit
    // to be restarted; what they publish must still be right (checked below).
    let gave_up: u32 = ["popularity-0", "popularity-2"]
        .iter()
        .map(|s| run.d.state(s).2)
        .sum();
    run.d.reconnect("popularity-1");
    let back = run.formed(&JOBS, "reconnect");
    eprintln!(
        "cut off for {:?}; restarts meanwhile {}; re-formed {back:?} after reconnecting",
        cut_for, gave_up
    );
    run.finish(&JOBS);
    let after: u32 = JOBS.iter().map(|s| run.d.state(s).2).sum();
    assert!(
        after > before,
        "the processes were restarted after the cut ({before} → {after})"
    );
    run.check("cutoff", true, "one container cut off for 30 s");
}

#[test]
fn the_broker_container_restarted_mid_run_loses_and_doubles_nothing() {
    // This broker forgets idempotent producers' state when it restarts (the
    // dead-letter producer would then fail with OutOfOrderSequenceNumber).
    // This broker reports end offsets below what it holds (thousands short,
    // before and after its restart) and after the restart hands out nothing
    // for a while: a partition read past the reported end and silent for the
    // idle timeout counts as done. 20 s, as in the in-process restart test.
    let job = job("brokerrestart", "brokerrestart")
        .replace("idle-timeout = \"8s\"", "idle-timeout = \"20s\"")
        + "[source.kafka.properties]\n\"enable.idempotence\" = \"false\"\n";
    let d = Deployment::new("brokerrestart", &job);
    let (broker, s3) = d.infra_with(&[("events", 6), ("events-dlq", 1)], true);
    // Every event is in before the restart, written by the standard client:
    // this broker, restarted, would assign offsets it already holds to the
    // next records produced to a partition before one is fetched from it.
    // One produce request at a time: with several in flight for a partition,
    // this broker on this store can lose an update of the partition's end
    // offset and then hands out nothing past it (one process read a
    // partition to 32 264 of 33 704 and, told that was its end, finished).
    let dir = scratch("broker-restart-events");
    let file = dir.join("events.jsonl");
    write_events(&file, &messy(74, 200_000), 400);
    let one_at_a_time = ["max.in.flight.requests.per.connection=1".to_string()];
    produce_file_with(&broker, "events", &file, &one_at_a_time);
    d.up(&JOBS, false);
    reformed(&d, &JOBS, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("the cluster did not form: {}", d.logs(&JOBS)));
    d.restart("kafka");
    let codes = d.wait_exited(&JOBS, Duration::from_secs(300));
    assert_eq!(codes, vec![0, 0, 0], "{}", d.logs(&JOBS));
    let want = recount_topic(&broker);
    assert_eq!(want.records, 200_000, "the broker kept its log");
    let got = store(&s3, "brokerrestart");
    assert_matches(&published_views(&got), &want, "broker restarted mid-run");
    let _ = std::fs::remove_dir_all(&dir);
}
