//! Freshness measured: events produced in real time by the standard client
//! (`scripts/produce.py`, paced), read from the broker by a job serving its
//! live board; the delay histogram must hold the sampled events, none shown
//! before the watermark could pass their pane (lateness), all within a bound.

use std::time::Duration;

use crate::common::http_get as get;
use crate::common::*;
use popularity::config::GeneratorConfig;

/// `(le, cumulative count)` of every bucket of a histogram in `text`, and its count.
fn histogram(text: &str, name: &str) -> (Vec<(f64, u64)>, u64) {
    let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
    let mut buckets = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{")) {
            let le = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next());
            let le = le.map(|s| {
                if s == "+Inf" {
                    f64::INFINITY
                } else {
                    s.parse().expect("le")
                }
            });
            buckets.push((
                le.expect("an le label"),
                value(line).expect("a count") as u64,
            ));
        } else if line.starts_with(&format!("{name}_count")) {
            count = value(line).expect("a count") as u64;
        }
    }
    (buckets, count)
}

#[test]
fn delays_from_arrival_to_the_live_board_are_measured() {
    let broker = Broker::with_events("fresh", 2);
    let dir = scratch("freshness");
    let events = dir.join("events.jsonl");
    // 12 000 events over 12 s of event time from now, produced at that pace:
    // each arrives about when it happened.
    let start = popularity::core::time::now_ms() + 1_000;
    let cfg = GeneratorConfig {
        events: 12_000,
        seed: 5,
        start: popularity::core::time::rfc3339(start),
        time_rate: 1_000.0,
        titles: 400,
        out_of_order: 0.0,
        late: 0.0,
        invalid: 0.0,
        ..GeneratorConfig::default()
    };
    write_events(&events, &cfg, 400);
    let mut job = kafka_job(&dir, &broker.addr, "events");
    job.window.size = Duration::from_secs(60);
    job.window.slide = Duration::from_secs(1);
    job.window.allowed_lateness = Duration::from_secs(5);
    job.model.score_window = Duration::from_secs(3600);
    let (ctx, addr) = serving(job);
    let (_ctx, runner) = run_in_background(ctx);
    produce_file_with(&broker.addr, "events", &events, &["pace=1000".into()]);
    let stats = runner.join().expect("job");
    assert_eq!(stats.read, 12_000, "{stats:?}");
    let (_, text) = get(&addr, "/metrics");
    let name = "popularity_view_visible_delay_seconds";
    let (buckets, count) = histogram(&text, name);
    assert!(
        buckets.len() > 10,
        "{name} exported with its buckets: {text}"
    );
    eprintln!("{count} samples shown; (le, cumulative): {buckets:?}");
    // One record in 256 by offset: at most 48 of 12 000 records over two
    // partitions. The board shows a pane once the watermark passed it, so
    // the last seconds (the lateness) are never shown before the job ends.
    assert!((12..=48).contains(&count), "{count} samples shown");
    let under = |s: f64| buckets.iter().find(|b| b.0 == s).map(|b| b.1);
    assert_eq!(
        under(1.0),
        Some(0),
        "none shown before the lateness passed: {buckets:?}"
    );
    assert_eq!(
        under(30.0),
        Some(count),
        "all shown within 30 s: {buckets:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
