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
fn reformed(d: &Deployment, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if JOBS.iter().all(|s| ready(&format!("{}:9464", d.ip(s)))) {
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
    // The start script writes the hostfile from PEER and takes -p from the hostname.
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
        text.contains("popularity-0.popularity.ns.svc:2101\npopularity-1.popularity.ns.svc:2101\npopularity-2.popularity.ns.svc:2101\n"),
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

#[test]
fn three_job_containers_crashed_ten_times_match_an_uninterrupted_run_and_the_recount() {
    let d = Deployment::new("crash", &job("crashy", "crashy"));
    let (broker, s3) = d.infra(&[("events", 6), ("events-dlq", 1)]);
    let cfg = messy(71, 200_000);
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (broker, g, done) = (broker.clone(), generator(&cfg), done.clone());
        std::thread::spawn(move || produce_paced(&broker, &g, 200_000, &done))
    };
    d.up(&JOBS, false);
    let mut rng = popularity::core::rng::SplitMix64::new(17);
    let mut reform = Vec::new();
    for round in 0..10 {
        let took = reformed(&d, Duration::from_secs(120)).unwrap_or_else(|| {
            panic!("round {round}: the cluster did not form: {}", d.logs(&JOBS))
        });
        reform.push(took);
        std::thread::sleep(Duration::from_millis(500 + rng.below(2_500)));
        d.crash(JOBS[rng.below(3) as usize]);
    }
    done.store(true, Ordering::Relaxed);
    producer.join().expect("producer");
    let codes = d.wait_exited(&JOBS, Duration::from_secs(300));
    assert_eq!(codes, vec![0, 0, 0], "{}", d.logs(&JOBS));
    let restarts: u32 = JOBS.iter().map(|s| d.state(s).2).sum();
    assert!(
        restarts >= 10,
        "every crash restarted a container ({restarts} restarts)"
    );
    eprintln!("re-forming after each crash took {reform:?}");
    // The reference: the same containers, uninterrupted, under another name.
    d.set_job(&job("reference", "reference"));
    d.up(&JOBS, true);
    assert_eq!(
        d.wait_exited(&JOBS, Duration::from_secs(300)),
        vec![0, 0, 0],
        "{}",
        d.logs(&JOBS)
    );
    let crashy = snapshot_objects(&store(&s3, "crashy"));
    let reference = snapshot_objects(&store(&s3, "reference"));
    assert_identical(&crashy, &reference, "three containers crashed ten times");
    let records = read_topic(&broker, "events", Duration::from_secs(2));
    let parts: Vec<Vec<Vec<u8>>> = records
        .values()
        .map(|rs| rs.iter().map(|r| r.1.clone()).collect())
        .collect();
    let want = recount(
        &parts,
        &popularity::core::time::WindowSpec::hourly(),
        120_000,
        &limits(),
    );
    assert_matches(
        &published_views(&store(&s3, "reference")),
        &want,
        "containers",
    );
}
