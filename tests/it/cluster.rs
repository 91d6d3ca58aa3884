//! The local cluster launcher: 2 processes × 2 workers against a real broker
//! and Garage, matching the recount.

use std::time::Duration;

use crate::common::oracle::recount_hourly;
use crate::common::*;
use popularity::sink::s3::S3Store;

/// Runs `scripts/cluster.sh` with this build's binary.
fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh"))
        .args(args)
        .env("POPULARITY_BIN", env!("CARGO_BIN_EXE_popularity"))
        .output()
        .expect("cluster.sh")
}

#[test]
fn two_processes_of_two_workers_via_the_launcher_match_the_recount() {
    let s3 = S3::start("cluster");
    s3.bucket("popularity");
    let broker = Broker::start("launcher");
    let cfg = messy(61, 40_000);
    let parts = fill_topic(&broker, "events", 4, &cfg);
    let want = recount_hourly(&parts);
    let dir = scratch("launcher");
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"launcher\"\n[source]\nkind = \"kafka\"\n[source.kafka]\nbrokers = \"{}\"\ntopic = \"events\"\ndead-letter-topic = \"events-dlq\"\nuntil = \"idle\"\nidle-timeout = \"3s\"\n[catalog]\ntitles = 400\n[sink]\nkind = \"s3\"\n[sink.s3]\nbucket = \"popularity\"\nprefix = \"cluster\"\nregion = \"garage\"\nendpoint = \"{}\"\npath-style = true\naccess-key-id = \"{S3_KEY_ID}\"\nsecret-access-key = \"{S3_SECRET}\"\n",
            broker.addr, s3.endpoint
        ),
    )
    .expect("job file");
    let (cdir, _) = start_cluster(&job, &dir, 2);
    let status = run(&["status", "--dir", &cdir]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("process 1"),
        "status lists both processes"
    );
    let out = run(&["wait", "--dir", &cdir, "--timeout", "300"]);
    assert!(
        out.status.success(),
        "a process failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = S3Store::connect(&s3.config("popularity", "cluster")).expect("connect");
    let got = published_views(&store);
    assert_matches(&got, &want, "launcher, 2 processes x 2 workers");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process of a cluster answers the query API for the whole job: it asks
/// the other processes for their shares and merges them, and both processes
/// give the same answers, equal to the recount.
#[test]
fn the_query_api_of_a_cluster_answers_for_every_shard() {
    let broker = Broker::start("cluster-api");
    let cfg = messy(67, 20_000);
    let parts = fill_topic(&broker, "events", 2, &cfg);
    let dir = scratch("cluster-api");
    let (cdir, mport) = start_api_cluster(&broker, &dir);
    let addrs = [
        format!("127.0.0.1:{mport}"),
        format!("127.0.0.1:{}", mport + 1),
    ];
    let auth = "Authorization: Bearer cluster-token\r\n";
    let get = |i: usize, path: &str| -> (u16, serde_json::Value) {
        let (code, body) = http_get_with(&addrs[i], path, auth);
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    };
    let settled = settle(&get, &cdir);
    let window = popularity::core::time::WindowSpec::hourly();
    let end =
        popularity::core::time::parse_rfc3339(settled["window"]["end"].as_str().expect("end"))
            .expect("rfc3339");
    let as_of = window.pane_of(end - 1).expect("pane");
    let spec = popularity::core::model::ModelConfig::default()
        .spec(window.slide_ms, window.panes())
        .expect("spec");
    let start = popularity::core::time::parse_rfc3339(&cfg.start).expect("start");
    let catalog = popularity::core::catalog::Catalog::synthesize(400, 7, start).expect("catalog");
    let rows = crate::common::oracle::model_at(
        &parts,
        &window,
        120_000,
        &limits(),
        &spec,
        &catalog,
        as_of,
    );
    let titles: Vec<&popularity::core::model::NodeRow> = rows
        .iter()
        .filter(|r| {
            !matches!(
                r.kind,
                Some(
                    popularity::core::catalog::Kind::Show
                        | popularity::core::catalog::Kind::Channel
                )
            )
        })
        .collect();
    assert_eq!(
        settled["views"].as_i64(),
        Some(titles.iter().map(|r| r.m.views).sum::<i64>()),
        "views over both processes"
    );
    assert_eq!(
        settled["watch_ms"].as_i64(),
        Some(titles.iter().map(|r| r.m.watch_ms).sum::<i64>()),
        "watch time over both processes"
    );
    let want: Vec<(f64, u64)> = popularity::core::model::top(&rows, "all", None, 5)
        .into_iter()
        .map(|(v, r)| (v, r.id))
        .collect();
    let answers: Vec<serde_json::Value> = (0..2)
        .map(|i| {
            let (code, body) = get(i, "/api/trending?category=all&k=5");
            assert_eq!(code, 200, "process {i}: {body}");
            body
        })
        .collect();
    assert_eq!(answers[0], answers[1], "both processes answer alike");
    assert_eq!(
        ranked(&answers[0]),
        want,
        "the merged top 5 equals the recount"
    );
    // Without the token: refused, whole-job and local alike; probes stay open.
    for path in ["/api/breakdown", "/api/local/api/breakdown"] {
        assert_eq!(http_get(&addrs[0], path).0, 401, "{path} without the token");
    }
    assert_eq!(http_get(&addrs[1], "/metrics").0, 200);
    // Each process alone holds only part of it.
    let (code, local) = get(0, "/api/local/api/breakdown");
    assert_eq!(code, 200, "{local}");
    assert!(local["views"].as_i64().unwrap_or(0) < settled["views"].as_i64().unwrap_or(0));
    // A title is answered whichever process holds it.
    let top = want[0].1;
    for i in 0..2 {
        let (code, body) = get(i, &format!("/api/titles/{top}"));
        assert_eq!(code, 200, "{body}");
        assert!(
            body["model"].is_object(),
            "process {i} finds title {top}: {body}"
        );
    }
    // Both processes asked at once: each asks the other while being asked.
    ask_both_at_once(&addrs);
    let out = run(&["stop", "--dir", &cdir]);
    assert!(
        out.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts 2 processes × 1 worker with the launcher, reading `events` with
/// a token on the API; returns the cluster's directory and first metrics port.
fn start_api_cluster(broker: &Broker, dir: &std::path::Path) -> (String, u16) {
    std::fs::create_dir_all(dir).expect("dir");
    // The API wants a token; the processes send it to each other.
    let token_file = dir.join("token");
    std::fs::write(&token_file, "cluster-token").expect("token file");
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"cluster-api\"\n[source]\nkind = \"kafka\"\n[source.kafka]\nbrokers = \"{}\"\ntopic = \"events\"\ndead-letter-topic = \"events-dlq\"\nuntil = \"never\"\n[catalog]\ntitles = 400\n[sink]\nkind = \"none\"\n[metrics]\ntoken = \"file:{}\"\n",
            broker.addr,
            token_file.display()
        ),
    )
    .expect("job file");
    start_cluster(&job, dir, 1)
}

/// Polls `/api/breakdown` until the merged window and totals are the same
/// over two polls; the answer then.
fn settle(get: &impl Fn(usize, &str) -> (u16, serde_json::Value), cdir: &str) -> serde_json::Value {
    // Settled: the merged window and totals the same over two polls.
    let started = std::time::Instant::now();
    let mut last = None;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the cluster's answers never settled; logs in {cdir}"
        );
        std::thread::sleep(Duration::from_millis(1500));
        let (code, body) = get(0, "/api/breakdown");
        if code != 200 {
            continue;
        }
        let now = (body["window"]["end"].clone(), body["views"].clone());
        if last.as_ref() == Some(&now) {
            return body;
        }
        last = Some(now);
    }
}

/// Four clients ask both processes at once, ten times each: every answer is 200.
fn ask_both_at_once(addrs: &[String; 2]) {
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let addr = addrs[c % 2].clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let auth = "Authorization: Bearer cluster-token\r\n";
                        http_get_with(&addr, "/api/trending?category=episode&k=3", auth).0
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for c in clients {
        let codes = c.join().expect("client");
        assert!(
            codes.iter().all(|c| *c == 200),
            "concurrent answers: {codes:?}"
        );
    }
}

/// Starts 2 processes of `workers` workers each with the launcher, on free
/// ports; returns the cluster's directory and the first process's metrics port.
fn start_cluster(job: &std::path::Path, dir: &std::path::Path, workers: usize) -> (String, u16) {
    let cdir = dir.join("cluster").display().to_string();
    let base = free_ports(4);
    let (port, mport) = (base, base + 2);
    let out = run(&[
        "start",
        "--job",
        &job.display().to_string(),
        "--processes",
        "2",
        "--workers",
        &workers.to_string(),
        "--dir",
        &cdir,
        "--port",
        &port.to_string(),
        "--metrics-port",
        &mport.to_string(),
    ]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cdir, mport)
}
