//! The local cluster launcher: 2 processes × 2 workers against a real broker
//! and Garage, matching the recount.

mod common;

use std::time::Duration;

use common::*;
use popularity::oracle::recount;
use popularity::sink::s3::S3Store;
use popularity::sink::snapshot::{published_hours, read_hour};

#[test]
fn two_processes_of_two_workers_via_the_launcher_match_the_recount() {
    let s3 = S3::start("cluster");
    s3.bucket("popularity");
    let broker = Broker::start("launcher");
    broker.topic("events", 4);
    broker.topic("events-dlq", 1);
    let cfg = messy(61, 40_000);
    produce_generated(&broker.addr, "events", &generator(&cfg), cfg.events);
    let records = read_topic(&broker.addr, "events", Duration::from_secs(2));
    let parts: Vec<Vec<Vec<u8>>> = records
        .values()
        .map(|rs| rs.iter().map(|r| r.1.clone()).collect())
        .collect();
    let want = recount(
        &parts,
        &popularity::time::WindowSpec::hourly(),
        120_000,
        &limits(),
    );
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
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
    let run = |args: &[&str]| {
        std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .env("POPULARITY_BIN", env!("CARGO_BIN_EXE_popularity"))
            .output()
            .expect("cluster.sh")
    };
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
        "2",
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
    let mut got = std::collections::BTreeMap::new();
    for hour in published_hours(&store).expect("hours") {
        let (_, rows) = read_hour(&store, hour).expect("read").expect("published");
        got.insert(
            hour,
            rows.into_iter()
                .map(|r| (r.content_id, r.views))
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
    }
    assert_matches(&got, &want, "launcher, 2 processes x 2 workers");
    let _ = std::fs::remove_dir_all(&dir);
}
