//! Fixtures: scratch directories, seeded messy traffic, event files, jobs
//! and readers of what a job published, compared with the recount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::oracle::Expected;
use popularity::config::{JobConfig, SourceKind};
use popularity::core::catalog::Catalog;
use popularity::core::event::{ContentId, Validation};
use popularity::sink::deadletter::{read_local, DeadLetter};
use popularity::sink::snapshot::{hour_prefix, published_hours, read_hour, TITLES};
use popularity::sink::store::{LocalStore, ObjectStore};
use popularity::source::traffic::{GenItem, Generator, GeneratorConfig};

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    // Every test of the binary runs in this process: a counter keeps two
    // tests that pick the same name apart.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("popularity-{name}-{}-{n}", std::process::id()));
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
        max_disorder: Duration::from_secs(240),
        late: 0.03,
        late_by: Duration::from_secs(1200),
        invalid: 0.02,
        ..GeneratorConfig::default()
    }
}

/// Writes the generator's records to a JSON-lines file, as `popularity generate` does.
pub fn write_events(path: &Path, cfg: &GeneratorConfig, catalog_titles: usize) -> Generator {
    let start = popularity::core::time::parse_rfc3339(&cfg.start).expect("valid start");
    let catalog = Catalog::synthesize(catalog_titles, 7, start).expect("valid catalog");
    let g = Generator::new(cfg, &catalog).expect("valid generator");
    std::fs::write(path, events_text(&g, 0..cfg.events)).expect("write events");
    g
}

/// The records `range` of `g` as JSON lines (malformed ones as generated).
pub fn events_text(g: &Generator, range: std::ops::Range<u64>) -> String {
    let mut text = String::new();
    for i in range {
        match g.item(i) {
            GenItem::Event(e) => text.push_str(&e.to_json()),
            GenItem::Malformed(s) => text.push_str(&s),
        }
        text.push('\n');
    }
    text
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

/// `(value, content id)` of each entry of a ranking the API answered.
pub fn ranked(body: &serde_json::Value) -> Vec<(f64, u64)> {
    body["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .map(|t| {
            (
                t["value"].as_f64().expect("value"),
                t["content_id"].as_u64().expect("id"),
            )
        })
        .collect()
}

/// Every published hour of `store`: hour → content → views, read through
/// the manifests and nothing more checked.
pub fn published_views(store: &dyn ObjectStore) -> BTreeMap<u64, BTreeMap<ContentId, i64>> {
    let mut out = BTreeMap::new();
    for hour in published_hours(store).expect("hours") {
        let (_, rows) = read_hour(store, hour).expect("read").expect("published");
        out.insert(
            hour,
            rows.into_iter().map(|r| (r.content_id, r.views)).collect(),
        );
    }
    out
}

/// Every published hour of a store: hour → content → views, checking manifests against the files.
pub fn published(root: &Path) -> BTreeMap<u64, BTreeMap<ContentId, i64>> {
    let store = LocalStore::new(root).expect("store");
    let mut out = BTreeMap::new();
    for hour in published_hours(&store).expect("list hours") {
        let (manifest, rows) = read_hour(&store, hour)
            .expect("read hour")
            .expect("published");
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
            assert!(
                counts.insert(r.content_id, r.views).is_none(),
                "content {} twice in hour {hour}",
                r.content_id
            );
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
    Validation {
        now_ms: popularity::core::time::now_ms(),
        max_future_ms: 86_400_000,
    }
}

/// Asserts the pipeline's output equals the recount, with a readable diff.
pub fn assert_matches(got: &BTreeMap<u64, BTreeMap<ContentId, i64>>, want: &Expected, what: &str) {
    assert!(
        !want.hours.is_empty(),
        "{what}: the oracle expects no hours; the test is vacuous"
    );
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
                .chain(
                    got_counts
                        .iter()
                        .filter(|(c, _)| !want_counts.contains_key(c))
                        .map(|(c, n)| format!("{c}: unexpected {n}")),
                )
                .take(10)
                .collect();
            panic!("{what}: hour {hour} differs: {diff:?}");
        }
    }
}

/// A generator over the standard 400-title test catalog.
pub fn generator(cfg: &GeneratorConfig) -> Generator {
    let start = popularity::core::time::parse_rfc3339(&cfg.start).expect("valid start");
    Generator::new(
        cfg,
        &Catalog::synthesize(400, 7, start).expect("valid catalog"),
    )
    .expect("valid generator")
}

/// Every object under `prefixes`, by key, with its bytes.
pub fn objects_under(store: &dyn ObjectStore, prefixes: &[&str]) -> BTreeMap<String, Vec<u8>> {
    prefixes
        .iter()
        .flat_map(|p| store.list(p).expect("list"))
        .map(|k| {
            let bytes = store.get(&k).expect("get").expect("exists");
            (k, bytes)
        })
        .collect()
}

/// Every object under `titles/` of a store: key → bytes.
pub fn snapshot_objects(store: &dyn ObjectStore) -> BTreeMap<String, Vec<u8>> {
    objects_under(store, &["titles/"])
}

/// Asserts two runs published the same objects, byte for byte.
pub fn assert_identical(
    got: &BTreeMap<String, Vec<u8>>,
    want: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    assert!(
        want.len() > 4,
        "{what}: the reference published too little to compare ({} objects)",
        want.len()
    );
    let got_keys: Vec<&String> = got.keys().collect();
    let want_keys: Vec<&String> = want.keys().collect();
    assert_eq!(
        got_keys, want_keys,
        "{what}: the same objects, no hour missing"
    );
    for (k, v) in want {
        assert!(got[k] == *v, "{what}: {k} differs");
    }
}

/// Decodes every published hour: hour key → sorted (content, views).
pub fn hours_of(objects: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<(u64, i64)>> {
    let mut out: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for (k, v) in objects {
        if let Some(hour) = k.strip_suffix("_SUCCESS") {
            out.entry(hour.to_string()).or_default();
        }
        if k.ends_with(".parquet") {
            let hour = &k[..k.rfind('/').expect("has dir") + 1];
            let rows = popularity::sink::parquet::decode_titles(v.clone()).expect("parquet");
            out.entry(hour.to_string())
                .or_default()
                .extend(rows.into_iter().map(|r| (r.content_id, r.views)));
        }
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}
