//! Hourly snapshots in a real S3 store (Garage, started by `scripts/garage.sh`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::oracle::{generator_partitions, recount};
use crate::common::*;
use popularity::config::{SinkKind, SourceKind};
use popularity::sink::s3::{ByteSize, S3Store};
use popularity::sink::snapshot::{hour_prefix, published_hours, read_hour, TITLES};
use popularity::sink::store::ObjectStore;
use popularity::source::DEFAULT_PARTITIONS;

fn generator_job(
    dir: &std::path::Path,
    s3: &S3,
    bucket: &str,
    events: u64,
    seed: u64,
) -> popularity::config::JobConfig {
    let mut job = file_job(dir, &dir.join("unused"));
    job.source.kind = SourceKind::Generator;
    job.source.generator = messy(seed, events);
    job.sink.kind = SinkKind::S3;
    job.sink.s3 = s3.config(bucket, "snapshots");
    job
}

/// Copies every object under the store to a local directory, keeping keys as paths.
fn mirror(store: &dyn ObjectStore, to: &std::path::Path) {
    for key in store.list("").expect("list") {
        let bytes = store.get(&key).expect("get").expect("listed object exists");
        let path = to.join(&key);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }
}

/// Reads the mirrored Parquet parts with DuckDB: hour → content → views.
fn duckdb_counts(root: &std::path::Path) -> BTreeMap<u64, BTreeMap<u64, i64>> {
    let out = run_ok(
        std::process::Command::new("python3")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/duckdb_counts.py"))
            .arg(root),
        "duckdb failed",
    );
    let mut counts: BTreeMap<u64, BTreeMap<u64, i64>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let dt = v["dt"].as_str().expect("dt");
        let hh: u32 = v["hour"]
            .as_str()
            .expect("hour")
            .parse()
            .expect("hour number");
        let hour = popularity::core::time::parse_hour(dt, hh).expect("valid hour");
        let prev = counts.entry(hour).or_default().insert(
            v["content_id"].as_u64().expect("id"),
            v["views"].as_i64().expect("views"),
        );
        assert!(prev.is_none(), "a title twice in one hour");
    }
    counts
}

#[test]
fn pipeline_writes_to_s3_and_duckdb_reads_the_oracle_counts() {
    let s3 = S3::start("pipeline");
    s3.bucket("popularity");
    let dir = scratch("s3-pipeline");
    let job = generator_job(&dir, &s3, "popularity", 60_000, 31);
    let window = job.window.spec().expect("valid");
    let ctx = popularity::job::Context::from_job(job.clone()).expect("connects");
    let g = ctx.generator.clone().expect("generator");
    run_in_process(job.clone(), 2);
    let want = recount(
        &generator_partitions(&g, 60_000, DEFAULT_PARTITIONS),
        &window,
        120_000,
        &limits(),
    );
    let store = S3Store::connect(&job.sink.s3).expect("connects");
    // Our reader, through the manifests.
    let mut ours = BTreeMap::new();
    for hour in published_hours(&store).expect("hours") {
        let (manifest, rows) = read_hour(&store, hour).expect("read").expect("published");
        let prefix = hour_prefix(TITLES, hour);
        let present: Vec<String> = store
            .list(&prefix)
            .expect("list")
            .into_iter()
            .map(|k| k[prefix.len()..].to_string())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        let listed: Vec<String> = manifest.parts.iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            present, listed,
            "_SUCCESS lists exactly the parts present in hour {hour}"
        );
        ours.insert(
            hour,
            rows.into_iter()
                .map(|r| (r.content_id, r.views))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    assert_matches(&ours, &want, "S3, our reader");
    // DuckDB, an independent reader, over the same objects.
    let local = dir.join("mirror");
    mirror(&store, &local);
    let mut duck = duckdb_counts(&local);
    for h in want.hours.keys() {
        duck.entry(*h).or_default(); // empty gap hours have no parts
    }
    assert_matches(&duck, &want, "S3, DuckDB");
    assert_eq!(store.pending_multipart().expect("list uploads"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn large_objects_go_up_in_several_parts() {
    let s3 = S3::start("multipart");
    s3.bucket("popularity");
    let mut cfg = s3.config("popularity", "mp");
    cfg.multipart_threshold = ByteSize(1); // everything larger than a byte is multipart
    cfg.multipart_chunk = ByteSize(5 << 20);
    let store = S3Store::connect(&cfg).expect("connects");
    let mut rng = popularity::core::rng::SplitMix64::new(5);
    let bytes: Vec<u8> = (0..(12 << 20) + 12_345)
        .map(|_| rng.next_u64() as u8)
        .collect();
    store.put("big/object.bin", &bytes).expect("multipart put");
    let etag = store.etag("big/object.bin").expect("head").expect("exists");
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "three parts (5 + 5 + 2 MiB), etag {etag}"
    );
    assert_eq!(store.get("big/object.bin").expect("get"), Some(bytes));
    assert_eq!(
        store.pending_multipart().expect("list uploads"),
        0,
        "no upload left open"
    );
    // Rewriting the same key is harmless (idempotent outputs rely on it).
    store
        .put("big/object.bin", b"small now")
        .expect("overwrite");
    assert_eq!(
        store.get("big/object.bin").expect("get"),
        Some(b"small now".to_vec())
    );
}

#[test]
fn store_outage_mid_run_loses_no_hour() {
    let s3 = S3::start("outage");
    s3.bucket("popularity");
    let dir = scratch("s3-outage");
    let mut job = generator_job(&dir, &s3, "popularity", 60_000, 32);
    job.source.generator.rate = 6_000.0; // about ten seconds of wall clock
    let window = job.window.spec().expect("valid");
    let ctx = Arc::new(popularity::job::Context::from_job(job.clone()).expect("connects"));
    let g = ctx.generator.clone().expect("generator");
    let stats = ctx.stats.clone();
    let runner = std::thread::spawn(move || {
        popularity::job::execute(timely::Config::process(2), ctx).expect("job runs")
    });
    std::thread::sleep(Duration::from_secs(3));
    s3.down();
    std::thread::sleep(Duration::from_secs(5));
    s3.up();
    runner.join().expect("job thread");
    let snap = stats.snapshot();
    assert!(
        snap.store_retries > 0,
        "the outage was noticed and retried: {snap:?}"
    );
    let want = recount(
        &generator_partitions(&g, 60_000, DEFAULT_PARTITIONS),
        &window,
        120_000,
        &limits(),
    );
    let store = S3Store::connect(&job.sink.s3).expect("connects");
    let got = published_views(&store);
    assert_matches(&got, &want, "S3 outage");
    assert_eq!(
        snap.hours_published as usize,
        want.hours.len(),
        "every hour published once"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_bucket_and_bad_credentials_fail_at_start() {
    let s3 = S3::start("errors");
    s3.bucket("popularity");
    let err = S3Store::connect(&s3.config("no-such-bucket", ""))
        .err()
        .expect("missing bucket");
    assert!(
        err.to_string().contains("`no-such-bucket` does not exist"),
        "{err}"
    );
    let mut bad = s3.config("popularity", "");
    bad.secret_access_key = Some("f".repeat(64));
    let err = S3Store::connect(&bad).err().expect("bad secret");
    assert!(
        err.to_string().contains("credentials were refused"),
        "{err}"
    );
    let mut down = s3.config("popularity", "");
    down.endpoint = Some(format!("http://127.0.0.1:{}", free_port()));
    down.startup_wait = Duration::from_secs(2);
    let began = std::time::Instant::now();
    let err = S3Store::connect(&down).err().expect("nothing listening");
    assert!(err.to_string().contains("could not reach"), "{err}");
    assert!(err.to_string().contains("startup-wait"), "{err}");
    assert!(
        began.elapsed() >= Duration::from_millis(1500) && began.elapsed() < Duration::from_secs(15),
        "waited about sink.s3.startup-wait: {:?}",
        began.elapsed()
    );
}

/// A store reached over HTTPS, as every production store is: the job
/// trusts the CA the operator gives it (`SSL_CERT_FILE`, read with the
/// system's trust store) and its hours equal the recount; a store whose
/// certificate nothing trusts is refused at start.
#[test]
fn a_store_behind_tls_is_written_with_verification() {
    let s3 = S3::start("tls");
    s3.bucket("popularity");
    let dir = scratch("s3-tls");
    let pki = dir.join("pki");
    make_pki(&pki);
    let tls_port = free_port();
    let _proxy = TlsProxy::start(&pki, tls_port, s3.port);
    let mut job = generator_job(&dir, &s3, "popularity", 20_000, 37);
    job.sink.s3.endpoint = Some(format!("https://127.0.0.1:{tls_port}"));
    job.sink.s3.startup_wait = Duration::from_secs(3);
    job.metrics.listen = "127.0.0.1:0".into();
    let job_file = dir.join("job.toml");
    std::fs::write(&job_file, toml::to_string(&job).expect("job as TOML")).expect("job file");
    let run = |ca: Option<&str>| {
        let ca = ca.map(|ca| pki.join(ca).display().to_string());
        let env: Vec<(&str, &str)> = ca.iter().map(|c| ("SSL_CERT_FILE", c.as_str())).collect();
        let limit = Duration::from_secs(300);
        wait_each(vec![spawn_job_with(&job_file, &[], &env)], limit)
            .remove(0)
            .expect("the job over TLS ends by itself")
    };
    let refused = run(Some("other-ca.pem"));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(
        refused.status.code(),
        Some(78),
        "a configuration error: {text}"
    );
    assert!(
        text.contains("certificate") && text.contains("SSL_CERT_FILE"),
        "says why: {text}"
    );
    assert!(
        !text.contains("cannot be reached yet"),
        "not waited for: {text}"
    );
    assert!(!text.contains("bug"), "not a bug: {text}");

    let out = run(Some("ca.pem"));
    assert!(
        out.status.success(),
        "the job writes over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same job's generator (its context opens the store, here directly).
    let mut plain = job.clone();
    plain.sink.s3 = s3.config("popularity", "snapshots");
    let ctx = popularity::job::Context::from_job(plain).expect("valid job");
    let g = ctx.generator.clone().expect("generator");
    let want = recount(
        &generator_partitions(&g, 20_000, DEFAULT_PARTITIONS),
        &job.window.spec().expect("valid"),
        120_000,
        &limits(),
    );
    let store = S3Store::connect(&s3.config("popularity", "snapshots")).expect("connects");
    assert_matches(&published_views(&store), &want, "S3 over TLS");
    let _ = std::fs::remove_dir_all(&dir);
}
