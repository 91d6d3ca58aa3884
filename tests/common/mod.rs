//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use popularity::catalog::Catalog;
use popularity::config::{JobConfig, SourceKind};
use popularity::event::{ContentId, Validation};
use popularity::generator::{GenItem, Generator, GeneratorConfig};
use popularity::oracle::Expected;
use popularity::pipeline::{execute, Context};
use popularity::sink::deadletter::{read_local, DeadLetter};
use popularity::sink::snapshot::{hour_prefix, published_hours, read_hour, TITLES};
use popularity::sink::store::{LocalStore, ObjectStore};
use popularity::stats::StatsSnapshot;

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("popularity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A generator config with plenty of disorder, lateness and junk, spanning a few hours.
pub fn messy(seed: u64, events: u64) -> GeneratorConfig {
    GeneratorConfig {
        events,
        seed,
        time_rate: 4.0,
        titles: 400,
        out_of_order: 0.15,
        max_disorder: "4m".into(),
        late: 0.03,
        late_by: "20m".into(),
        invalid: 0.02,
        ..GeneratorConfig::default()
    }
}

/// Writes the generator's records to a JSON-lines file, as `popularity generate` does.
pub fn write_events(path: &Path, cfg: &GeneratorConfig, catalog_titles: usize) -> Generator {
    let start = popularity::time::parse_rfc3339(&cfg.start).expect("valid start");
    let catalog = Catalog::synthesize(catalog_titles, 7, start).expect("valid catalog");
    let g = Generator::new(cfg, &catalog).expect("valid generator");
    let mut text = String::new();
    for i in 0..cfg.events {
        match g.item(i) {
            GenItem::Event(e) => text.push_str(&e.to_json()),
            GenItem::Malformed(s) => text.push_str(&s),
        }
        text.push('\n');
    }
    std::fs::write(path, text).expect("write events");
    g
}

/// A job reading `events` and writing under `dir`.
pub fn file_job(dir: &Path, events: &Path) -> JobConfig {
    let mut job = JobConfig::default();
    job.source.kind = SourceKind::File;
    job.source.file.path = events.to_path_buf();
    job.source.batch = 997; // odd, so batches cut across panes and hours
    job.sink.path = dir.join("snapshots");
    job.dead_letter.path = dir.join("dead-letters");
    job.catalog.titles = 400;
    job
}

/// Runs a job in this process with `workers` threads.
pub fn run_in_process(job: JobConfig, workers: usize) -> StatsSnapshot {
    let ctx = Arc::new(Context::from_job(job).expect("valid job"));
    execute(timely::Config::process(workers), ctx).expect("job runs")
}

/// Every published hour of a store: hour → content → views, checking manifests against the files.
pub fn published(root: &Path) -> BTreeMap<u64, BTreeMap<ContentId, i64>> {
    let store = LocalStore::new(root).expect("store");
    let mut out = BTreeMap::new();
    for hour in published_hours(&store).expect("list hours") {
        let (manifest, rows) = read_hour(&store, hour).expect("read hour").expect("published");
        // The manifest lists exactly the parts present.
        let prefix = hour_prefix(TITLES, hour);
        let mut present: Vec<String> = store
            .list(&prefix)
            .expect("list")
            .into_iter()
            .map(|k| k[prefix.len()..].to_string())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        present.sort();
        let listed: Vec<String> = manifest.parts.iter().map(|p| p.name.clone()).collect();
        assert_eq!(present, listed, "parts of hour {hour}");
        assert_eq!(manifest.rows, rows.len() as u64);
        let mut counts = BTreeMap::new();
        for r in rows {
            assert!(r.views != 0, "zero rows are not written");
            assert!(counts.insert(r.content_id, r.views).is_none(), "content {} twice in hour {hour}", r.content_id);
            assert_eq!(r.window_end - r.window_start, 3_600_000);
        }
        out.insert(hour, counts);
    }
    out
}

/// Dead letters by reason.
pub fn dead_letter_counts(dir: &Path) -> (BTreeMap<String, u64>, Vec<DeadLetter>) {
    let letters = read_local(dir).expect("read dead letters");
    let mut counts = BTreeMap::new();
    for l in &letters {
        *counts.entry(l.reason.clone()).or_insert(0) += 1;
    }
    (counts, letters)
}

/// Validation limits matching the pipeline's defaults.
pub fn limits() -> Validation {
    Validation { now_ms: popularity::time::now_ms(), max_future_ms: 86_400_000 }
}

/// Asserts the pipeline's output equals the recount, with a readable diff.
pub fn assert_matches(got: &BTreeMap<u64, BTreeMap<ContentId, i64>>, want: &Expected, what: &str) {
    assert!(!want.hours.is_empty(), "{what}: the oracle expects no hours; the test is vacuous");
    let got_hours: Vec<u64> = got.keys().copied().collect();
    let want_hours: Vec<u64> = want.hours.keys().copied().collect();
    assert_eq!(got_hours, want_hours, "{what}: published hours");
    for (hour, want_counts) in &want.hours {
        let got_counts = &got[hour];
        if got_counts != want_counts {
            let diff: Vec<String> = want_counts
                .iter()
                .filter(|(c, n)| got_counts.get(c) != Some(n))
                .map(|(c, n)| format!("{c}: want {n} got {:?}", got_counts.get(c)))
                .chain(got_counts.iter().filter(|(c, _)| !want_counts.contains_key(c)).map(|(c, n)| format!("{c}: unexpected {n}")))
                .take(10)
                .collect();
            panic!("{what}: hour {hour} differs: {diff:?}");
        }
    }
}
