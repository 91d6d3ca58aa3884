//! Bad input: a file mixing valid and malformed lines yields the valid
//! counts plus dead letters that account for every other line.

use crate::common::*;
use popularity::core::event::{Device, EventType, Region, Tier, WatchEvent};

#[test]
fn every_bad_line_is_dead_lettered_with_its_reason() {
    let dir = scratch("bad-input");
    let t0 = popularity::core::time::parse_rfc3339("2026-02-01T10:00:00Z").expect("valid");
    let ev = |id: u64, content: u64, t: i64| WatchEvent {
        event_id: id,
        user_id: 1,
        content_id: content,
        event_type: EventType::StartedVideo,
        event_time: t,
        watched_ms: 0,
        region: Region(0),
        tier: Tier::Free,
        device: Device::Mobile,
    };
    // (line, expected reason or None if valid)
    let mut lines: Vec<(String, Option<&str>)> = Vec::new();
    for i in 0..50 {
        lines.push((ev(i, 1 + i % 3, t0 + i as i64 * 60_000).to_json(), None));
    }
    let good = ev(999, 7, t0 + 70 * 60_000).to_json();
    lines.push(("{\"event_id\": 1, \"user_id\"".into(), Some("malformed")));
    lines.push(("".into(), Some("malformed")));
    lines.push(("\u{fffd}\u{0}binary".into(), Some("malformed")));
    lines.push((
        good.replace("started_video", "rewound"),
        Some("unknown_value"),
    ));
    lines.push((good.replace("\"free\"", "\"vip\""), Some("unknown_value")));
    lines.push((
        good.replace("\"mobile\"", "\"fridge\""),
        Some("unknown_value"),
    ));
    lines.push((
        good.replace("\"watched_ms\":0", "\"watched_ms\":-1000"),
        Some("out_of_range"),
    ));
    lines.push((
        good.replace(&(t0 + 70 * 60_000).to_string(), "4102444800000"),
        Some("out_of_range"),
    ));
    lines.push((good.replace("\"content_id\":7,", ""), Some("malformed")));
    // Far behind the watermark (which is near t0 + 50 min by now): late.
    lines.push((ev(1000, 2, t0 - 3_600_000).to_json(), Some("late")));
    lines.push((good.clone(), None));
    let mut text = String::new();
    let mut offsets = Vec::new();
    for (l, _) in &lines {
        offsets.push(text.len() as u64);
        text.push_str(l);
        text.push('\n');
    }
    let events = dir.join("events.jsonl");
    std::fs::write(&events, &text).expect("write");
    // One partition: the late line must be judged by the clock the lines before it moved.
    let mut job = file_job(&dir, &events);
    job.source.file.partitions = 1;
    let stats = run_in_process(job, 1);
    let (_, letters) = dead_letter_counts(&dir.join("dead-letters"));
    let want: Vec<(u64, &str, String)> = lines
        .iter()
        .zip(&offsets)
        .filter_map(|((l, r), o)| r.map(|r| (*o, r, l.clone())))
        .collect();
    let mut got: Vec<(u64, &str, String)> = letters
        .iter()
        .map(|d| (d.position, d.reason.as_str(), d.raw.clone()))
        .collect();
    got.sort();
    // Raw bytes come back as lossy UTF-8; the test lines are valid UTF-8, so they compare exactly.
    assert_eq!(got, want);
    assert!(letters
        .iter()
        .all(|d| !d.detail.is_empty() && d.source == "file"));
    assert_eq!(stats.read, lines.len() as u64);
    assert_eq!(stats.dead_lettered, want.len() as u64);
    // Valid counts: the hour 10:00–11:00 holds 50 views over contents 1..=3, the 11:00 hour the rest.
    let hours = published(&dir.join("snapshots"));
    let h10 = (t0 / 3_600_000) as u64;
    assert_eq!(hours[&h10].values().sum::<i64>(), 50);
    assert_eq!(hours[&h10][&1], 17);
    assert_eq!(hours[&(h10 + 1)].get(&7), Some(&1));
    let _ = std::fs::remove_dir_all(&dir);
}
