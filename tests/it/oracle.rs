//! Oracle tests: every hourly snapshot equals a from-scratch recount.
//!
//! Seeded random streams with out-of-order, late and malformed records go
//! through the real pipeline (file or generator source, local store) with
//! 1, 2 and 4 workers, and with 2 processes on localhost; the published
//! hours and the dead letters must equal what `oracle::recount` computes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::oracle::{file_partitions, generator_partitions, recount, recount_hourly};
use crate::common::*;
use popularity::config::SourceKind;
use popularity::source::traffic::GeneratorConfig;
use popularity::source::DEFAULT_PARTITIONS;

#[test]
fn file_source_matches_recount_with_1_2_4_workers() {
    for seed in [1u64, 2] {
        let dir = scratch(&format!("file-{seed}"));
        let events = dir.join("events.jsonl");
        write_events(&events, &messy(seed, 60_000), 400);
        // With the model (its title stage counts the views) and without (the view window alone).
        for (workers, model) in [(1usize, true), (2, true), (4, true), (1, false), (4, false)] {
            let out = dir.join(format!("w{workers}-{model}"));
            let mut job = file_job(&out, &events);
            job.model.enabled = model;
            let window = job.window.spec().expect("valid");
            let lateness = job.window.lateness_ms();
            let stats = run_in_process(job, workers);
            let want = recount(
                &file_partitions(&events, DEFAULT_PARTITIONS).expect("read"),
                &window,
                lateness,
                &limits(),
            );
            assert!(
                want.hours.len() >= 4,
                "at least four hours of data, got {}",
                want.hours.len()
            );
            assert!(
                want.dead_letters.get("late").copied().unwrap_or(0) > 100,
                "late events exercised: {:?}",
                want.dead_letters
            );
            assert_matches(
                &published(&out.join("snapshots")),
                &want,
                &format!("seed {seed}, {workers} workers, model {model}"),
            );
            let (letters, _) = dead_letter_counts(&out.join("dead-letters"));
            assert_eq!(
                letters, want.dead_letters,
                "dead letters, seed {seed}, {workers} workers, model {model}"
            );
            assert_eq!(stats.read, want.records);
            assert_eq!(stats.views, want.views);
            assert_eq!(stats.dead_lettered, want.dead_letters.values().sum::<u64>());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn generator_source_matches_recount() {
    for workers in [1usize, 2, 4] {
        let dir = scratch(&format!("gen-{workers}"));
        let mut job = file_job(&dir, &dir.join("unused"));
        job.source.kind = SourceKind::Generator;
        job.source.generator = messy(9, 50_000);
        job.source.batch = 1013;
        let window = job.window.spec().expect("valid");
        let lateness = job.window.lateness_ms();
        let ctx = popularity::job::Context::from_job(job.clone()).expect("valid job");
        let g = ctx.generator.clone().expect("generator");
        run_in_process(job, workers);
        let want = recount(
            &generator_partitions(&g, 50_000, DEFAULT_PARTITIONS),
            &window,
            lateness,
            &limits(),
        );
        assert_matches(
            &published(&dir.join("snapshots")),
            &want,
            &format!("generator, {workers} workers"),
        );
        let (letters, _) = dead_letter_counts(&dir.join("dead-letters"));
        assert_eq!(letters, want.dead_letters);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn other_window_geometries_match_recount() {
    // Windows longer and shorter than an hour, and a coarser slide.
    for (size, slide, model) in [
        (120, 5, true),
        (30, 1, true),
        (60, 10, true),
        (120, 5, false),
        (30, 1, false),
    ] {
        let dir = scratch(&format!("geom-{size}m-{slide}m-{model}"));
        let events = dir.join("events.jsonl");
        write_events(&events, &messy(5, 30_000), 400);
        let mut job = file_job(&dir, &events);
        job.window.size = Duration::from_secs(size * 60);
        job.window.slide = Duration::from_secs(slide * 60);
        job.model.enabled = model;
        let window = job.window.spec().expect("valid");
        let lateness = job.window.lateness_ms();
        run_in_process(job, 2);
        let want = recount(
            &file_partitions(&events, DEFAULT_PARTITIONS).expect("read"),
            &window,
            lateness,
            &limits(),
        );
        let got = published_any_width(&dir.join("snapshots"));
        assert_matches(
            &got,
            &want,
            &format!("window {size} sliding {slide}, model {model}"),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Like `published` but without the 1-hour window-width check.
fn published_any_width(
    root: &std::path::Path,
) -> std::collections::BTreeMap<u64, std::collections::BTreeMap<u64, i64>> {
    let store = popularity::sink::store::LocalStore::new(root).expect("store");
    published_views(&store)
}

#[test]
fn same_input_gives_byte_identical_snapshots() {
    let dir = scratch("determinism");
    let events = dir.join("events.jsonl");
    write_events(&events, &messy(3, 30_000), 400);
    let mut trees = Vec::new();
    for (run, workers) in [(0, 2), (1, 2)] {
        let out = dir.join(format!("run{run}"));
        run_in_process(file_job(&out, &events), workers);
        let root = out.join("snapshots");
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("list").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push((
                        p.strip_prefix(&root)
                            .expect("under root")
                            .display()
                            .to_string(),
                        std::fs::read(&p).expect("read"),
                    ));
                }
            }
        }
        files.sort();
        assert!(files.len() > 4);
        trees.push(files);
    }
    assert_eq!(trees[0], trees[1]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes a file-source job for `run_cluster` (the same defaults as `file_job`).
fn cluster_job(dir: &Path, events: &Path) -> PathBuf {
    let job_path = dir.join("job.toml");
    std::fs::write(
        &job_path,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[source]\nkind = \"file\"\nbatch = 777\n[source.file]\npath = \"{}\"\n[catalog]\ntitles = 400\n[sink]\npath = \"{}\"\n[dead-letter]\npath = \"{}\"\n",
            events.display(),
            dir.join("snapshots").display(),
            dir.join("dead-letters").display()
        ),
    )
    .expect("job file");
    job_path
}

/// Runs the job at `job_path` as 2 processes of `workers` workers on localhost.
fn run_cluster(dir: &Path, job_path: &Path, workers: usize) {
    let _ = std::fs::remove_dir_all(dir.join("snapshots"));
    let _ = std::fs::remove_dir_all(dir.join("dead-letters"));
    run_cluster_to_end(job_path, dir, 2, workers);
}

#[test]
fn two_processes_on_localhost_match_recount() {
    let dir = scratch("cluster");
    let events = dir.join("events.jsonl");
    write_events(&events, &messy(4, 40_000), 400);
    let job_path = cluster_job(&dir, &events);
    for workers in [1usize, 2] {
        run_cluster(&dir, &job_path, workers);
        let want = recount_hourly(&file_partitions(&events, DEFAULT_PARTITIONS).expect("read"));
        assert_matches(
            &published(&dir.join("snapshots")),
            &want,
            &format!("2 processes × {workers} workers"),
        );
        let (letters, _) = dead_letter_counts(&dir.join("dead-letters"));
        assert_eq!(letters, want.dead_letters);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Moves the event time of `n` seeded-random valid lines: most of them 1 minute
/// to 20 hours ahead (clients with bad clocks), a few 20 hours behind.
/// Returns how many lines it moved.
fn skew_clocks(path: &Path, seed: u64, n: usize) -> usize {
    let text = std::fs::read_to_string(path).expect("read events");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut rng = popularity::core::rng::SplitMix64::new(seed);
    let mut moved = 0;
    while moved < n {
        let k = (rng.next_u64() % lines.len() as u64) as usize;
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&lines[k]) else {
            continue;
        };
        let Some(t) = v.get("event_time").and_then(|t| t.as_i64()) else {
            continue;
        };
        let shift = if moved % 8 == 7 {
            -20 * 3_600_000
        } else {
            60_000 + (rng.next_u64() % (20 * 3_600_000 - 60_000)) as i64
        };
        v["event_time"] = serde_json::json!(t + shift);
        lines[k] = v.to_string();
        moved += 1;
    }
    std::fs::write(path, lines.join("\n") + "\n").expect("write events");
    moved
}

/// Dead letters as comparable tuples, sorted.
fn letters_of(dir: &Path) -> Vec<(u32, u64, String, String, String)> {
    let (_, letters) = dead_letter_counts(dir);
    let mut out: Vec<_> = letters
        .into_iter()
        .map(|l| (l.partition, l.position, l.reason, l.detail, l.raw))
        .collect();
    out.sort();
    out
}

#[test]
fn skewed_clocks_match_the_oracle_on_any_parallelism_and_lose_almost_nothing() {
    let dir = scratch("skew");
    let events = dir.join("events.jsonl");
    let records = 300_000u64;
    write_events(&events, &messy(11, records), 400);
    let clean = recount_hourly(&file_partitions(&events, DEFAULT_PARTITIONS).expect("read"));
    // 1 to 10 per partition on average: 80 over 16 partitions.
    let moved = skew_clocks(&events, 5, 80);
    let want = recount_hourly(&file_partitions(&events, DEFAULT_PARTITIONS).expect("read"));
    let skewed = want.dead_letters.get("clock_skew").copied().unwrap_or(0);
    assert!(
        skewed >= 40,
        "far-ahead records are rejected as clock_skew: {:?}",
        want.dead_letters
    );
    let rejected = |e: &crate::common::oracle::Expected| e.dead_letters.values().sum::<u64>();
    let lost = rejected(&want).saturating_sub(rejected(&clean) + moved as u64);
    assert!(
        lost * 1000 <= records,
        "{lost} valid records lost to {moved} bad clocks (more than 0.1 %): {:?} vs {:?}",
        want.dead_letters,
        clean.dead_letters
    );
    let mut runs = Vec::new();
    for workers in [1usize, 2, 4] {
        let out = dir.join(format!("w{workers}"));
        let stats = run_in_process(file_job(&out, &events), workers);
        assert_eq!(stats.clock_skew, skewed, "{workers} workers");
        runs.push((format!("{workers} workers"), out));
    }
    run_cluster(&dir, &cluster_job(&dir, &events), 1);
    runs.push(("2 processes × 1 worker".into(), dir.clone()));
    let first = letters_of(&runs[0].1.join("dead-letters"));
    for (what, out) in &runs {
        assert_matches(&published(&out.join("snapshots")), &want, what);
        let letters = letters_of(&out.join("dead-letters"));
        assert_eq!(letters.len() as u64, rejected(&want), "{what}");
        assert!(
            letters == first,
            "{what}: the same dead letters as with 1 worker"
        );
    }
    let late = first.iter().find(|l| l.2 == "late").expect("a late letter");
    assert!(
        late.3.contains(" behind the watermark "),
        "says by how much: {}",
        late.3
    );
    let skew = first
        .iter()
        .find(|l| l.2 == "clock_skew")
        .expect("a skew letter");
    assert!(
        skew.3.contains(" ahead of partition "),
        "says by how much: {}",
        skew.3
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_two_day_gap_publishes_every_hour_after_it_exactly() {
    let dir = scratch("gap");
    let events = dir.join("events.jsonl");
    let before = messy(12, 20_000);
    write_events(&events, &before, 400);
    let after_path = dir.join("after.jsonl");
    let after = GeneratorConfig {
        start: "2026-01-03T02:00:00Z".into(),
        seed: 13,
        ..before
    };
    write_events(&after_path, &after, 400);
    let mut text = std::fs::read(&events).expect("read");
    text.extend(std::fs::read(&after_path).expect("read"));
    std::fs::write(&events, text).expect("write");
    let want = recount_hourly(&file_partitions(&events, DEFAULT_PARTITIONS).expect("read"));
    let empty = want.hours.values().filter(|h| h.is_empty()).count();
    assert!(empty >= 40, "the gap's hours are published empty: {empty}");
    let last = *want.hours.keys().next_back().expect("hours");
    assert!(!want.hours[&last].is_empty());
    for workers in [1usize, 2] {
        let out = dir.join(format!("w{workers}"));
        let began = std::time::Instant::now();
        let stats = run_in_process(file_job(&out, &events), workers);
        println!(
            "2-day gap, {workers} workers: {} hours ({empty} empty) in {:?}",
            want.hours.len(),
            began.elapsed()
        );
        assert_eq!(
            stats.clock_skew,
            want.dead_letters.get("clock_skew").copied().unwrap_or(0)
        );
        assert_matches(
            &published(&out.join("snapshots")),
            &want,
            &format!("gap, {workers} workers"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
