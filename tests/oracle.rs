//! Oracle tests: every hourly snapshot equals a from-scratch recount.
//!
//! Seeded random streams with out-of-order, late and malformed records go
//! through the real pipeline (file or generator source, local store) with
//! 1, 2 and 4 workers, and with 2 processes on localhost; the published
//! hours and the dead letters must equal what `oracle::recount` computes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use popularity::config::SourceKind;
use popularity::source::DEFAULT_PARTITIONS;
use popularity::oracle::{file_partitions, generator_partitions, recount};

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
            let lateness = job.window.lateness_ms().expect("valid");
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
        let lateness = job.window.lateness_ms().expect("valid");
        let ctx = popularity::pipeline::Context::from_job(job.clone()).expect("valid job");
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
        ("2h", "5m", true),
        ("30m", "1m", true),
        ("1h", "10m", true),
        ("2h", "5m", false),
        ("30m", "1m", false),
    ] {
        let dir = scratch(&format!("geom-{size}-{slide}-{model}"));
        let events = dir.join("events.jsonl");
        write_events(&events, &messy(5, 30_000), 400);
        let mut job = file_job(&dir, &events);
        job.window.size = size.into();
        job.window.slide = slide.into();
        job.model.enabled = model;
        let window = job.window.spec().expect("valid");
        let lateness = job.window.lateness_ms().expect("valid");
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
    use popularity::sink::snapshot::{published_hours, read_hour};
    use popularity::sink::store::LocalStore;
    let store = LocalStore::new(root).expect("store");
    let mut out = std::collections::BTreeMap::new();
    for hour in published_hours(&store).expect("hours") {
        let (_, rows) = read_hour(&store, hour).expect("read").expect("published");
        out.insert(
            hour,
            rows.into_iter().map(|r| (r.content_id, r.views)).collect(),
        );
    }
    out
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

#[test]
fn two_processes_on_localhost_match_recount() {
    let dir = scratch("cluster");
    let events = dir.join("events.jsonl");
    write_events(&events, &messy(4, 40_000), 400);
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
    for workers in [1usize, 2] {
        let _ = std::fs::remove_dir_all(dir.join("snapshots"));
        let _ = std::fs::remove_dir_all(dir.join("dead-letters"));
        let base = free_ports(2);
        let ports = [base, base + 1];
        let hostfile = dir.join("hosts");
        std::fs::write(
            &hostfile,
            ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}\n"))
                .collect::<String>(),
        )
        .expect("hostfile");
        let handles: Vec<_> = (0..2)
            .map(|p| {
                Command::new(env!("CARGO_BIN_EXE_popularity"))
                    .args(["run", "--job"])
                    .arg(&job_path)
                    .args([
                        "-w",
                        &workers.to_string(),
                        "-n",
                        "2",
                        "-p",
                        &p.to_string(),
                        "-h",
                    ])
                    .arg(&hostfile)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for out in wait_group(handles, Duration::from_secs(300), "two processes") {
            assert!(
                out.status.success(),
                "process failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let want = recount(
            &file_partitions(&events, DEFAULT_PARTITIONS).expect("read"),
            &popularity::time::WindowSpec::hourly(),
            120_000,
            &limits(),
        );
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
