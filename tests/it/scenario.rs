//! A scenario a product person would recognise: a live match spikes and
//! ends; its highlight clips top the clip ranking, then decay below a clip
//! of an event still running; a steady show overtakes a show whose one
//! episode had a single big hour.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use popularity::sink::snapshot::read_table_hour;
use popularity::sink::store::LocalStore;
use popularity::sink::tables::{TITLE_MEASURES, TRENDING};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MIN: i64 = 60_000;

// Catalog ids.
const CHANNEL: u64 = 1;
const STEADY_SHOW: u64 = 10;
const STEADY_EP: u64 = 11;
const SPIKY_SHOW: u64 = 20;
const SPIKY_EP: u64 = 21;
const MATCH: u64 = 30;
const CLIP_A: u64 = 31;
const CLIP_B: u64 = 32;
const FESTIVAL: u64 = 40;
const FESTIVAL_CLIP: u64 = 41;

fn catalog() -> String {
    [
        format!("{{\"id\":{CHANNEL},\"kind\":\"channel\",\"name\":\"Sports and more\"}}"),
        format!("{{\"id\":{STEADY_SHOW},\"kind\":\"show\",\"name\":\"Steady\",\"parent\":{CHANNEL}}}"),
        format!("{{\"id\":{STEADY_EP},\"kind\":\"episode\",\"name\":\"Steady 1\",\"parent\":{STEADY_SHOW}}}"),
        format!("{{\"id\":{SPIKY_SHOW},\"kind\":\"show\",\"name\":\"Spiky\",\"parent\":{CHANNEL}}}"),
        format!("{{\"id\":{SPIKY_EP},\"kind\":\"episode\",\"name\":\"Spiky 1\",\"parent\":{SPIKY_SHOW}}}"),
        format!(
            "{{\"id\":{MATCH},\"kind\":\"live\",\"name\":\"Final\",\"parent\":{CHANNEL},\"starts_at\":{T0},\"ends_at\":{}}}",
            T0 + 90 * MIN
        ),
        format!("{{\"id\":{CLIP_A},\"kind\":\"clip\",\"name\":\"Winning goal\",\"parent\":{MATCH}}}"),
        format!("{{\"id\":{CLIP_B},\"kind\":\"clip\",\"name\":\"Red card\",\"parent\":{MATCH}}}"),
        format!(
            "{{\"id\":{FESTIVAL},\"kind\":\"live\",\"name\":\"Festival\",\"parent\":{CHANNEL},\"starts_at\":{T0},\"ends_at\":{}}}",
            T0 + 12 * 60 * MIN
        ),
        format!("{{\"id\":{FESTIVAL_CLIP},\"kind\":\"clip\",\"name\":\"Opening act\",\"parent\":{FESTIVAL}}}"),
    ]
    .join("\n")
        + "\n"
}

/// Views per minute of each title over the first six hours.
fn per_minute(id: u64, minute: i64) -> u64 {
    match id {
        STEADY_EP => 20,
        SPIKY_EP if minute < 60 => 100,
        MATCH if minute < 90 => 200,
        CLIP_A if (30..150).contains(&minute) => 150,
        CLIP_B if (30..150).contains(&minute) => 100,
        FESTIVAL_CLIP => 30,
        _ => 0,
    }
}

fn events() -> String {
    let regions = ["IN-MH", "IN-DL", "US"];
    let mut out = String::new();
    let mut n = 0u64;
    for minute in 0..360 {
        for id in [STEADY_EP, SPIKY_EP, MATCH, CLIP_A, CLIP_B, FESTIVAL_CLIP] {
            let views = per_minute(id, minute);
            for k in 0..views {
                n += 1;
                let time = T0 + minute * MIN + (k as i64 * MIN) / views as i64;
                out.push_str(&format!(
                    "{{\"event_id\":{n},\"user_id\":{},\"content_id\":{id},\"event_type\":\"started_video\",\"event_time\":{time},\"watched_ms\":0,\"region\":\"{}\",\"tier\":\"{}\",\"device\":\"tv\"}}\n",
                    n % 997,
                    regions[(n % 3) as usize],
                    if n.is_multiple_of(2) { "free" } else { "paid" },
                ));
            }
        }
    }
    out
}

/// hour (from T0) → category → ids in rank order (global rankings).
type Rankings = BTreeMap<u64, BTreeMap<String, Vec<u64>>>;

#[test]
fn a_match_spikes_and_ends_its_clips_fall_and_a_steady_show_rises() {
    let dir = scratch("scenario");
    let events_path = dir.join("events.jsonl");
    std::fs::write(&events_path, events()).expect("events");
    let catalog_path = dir.join("catalog.jsonl");
    std::fs::write(&catalog_path, catalog()).expect("catalog");
    let mut job = file_job(&dir, &events_path);
    job.catalog.path = Some(catalog_path);
    job.model.clip_half_life = Duration::from_secs(600);
    job.model.top_k = 10;
    run_in_process(job.clone(), 2);
    let store = LocalStore::new(&job.sink.path).expect("store");
    let first_hour = (T0 / 3_600_000) as u64;
    let mut ranks: Rankings = BTreeMap::new();
    for h in 0..6 {
        let (_, rows) = read_table_hour(&store, TRENDING, first_hour + h)
            .expect("read")
            .unwrap_or_else(|| panic!("hour {h} published"));
        for r in rows.iter().filter(|r| r["region"].text().is_empty()) {
            ranks
                .entry(h)
                .or_default()
                .entry(r["category"].text().to_string())
                .or_default()
                .push(r["content_id"].int() as u64);
        }
    }
    let at = |h: u64, cat: &str| ranks[&h].get(cat).cloned().unwrap_or_default();
    // While it is on, the match leads everything.
    assert_eq!(at(0, "live")[0], MATCH);
    assert_eq!(at(0, "all")[0], MATCH);
    // Its clips lead the clips while it is on ...
    assert_eq!(at(0, "clip"), vec![CLIP_A, CLIP_B, FESTIVAL_CLIP]);
    // ... and fall below a clip of an event still running once it has ended.
    assert_eq!(at(1, "clip"), vec![FESTIVAL_CLIP, CLIP_A, CLIP_B]);
    assert_eq!(at(2, "clip")[0], FESTIVAL_CLIP);
    // An hour after the match, it is out of the rankings.
    assert!(!at(3, "all").contains(&MATCH), "{:?}", at(3, "all"));
    // The spiky show leads the shows at first; the steady one overtakes it
    // as its 24-hour views keep growing.
    assert_eq!(at(0, "show"), vec![SPIKY_SHOW, STEADY_SHOW]);
    assert_eq!(at(5, "show"), vec![STEADY_SHOW, SPIKY_SHOW]);
    let rank_of = |h: u64, id: u64| at(h, "all").iter().position(|x| *x == id);
    assert!(
        rank_of(5, STEADY_SHOW) < rank_of(0, STEADY_SHOW),
        "the steady show rises: {:?} then {:?}",
        at(0, "all"),
        at(5, "all")
    );
    // The clip's decay is what the table says: three half-lives after the end.
    let (_, titles) = read_table_hour(&store, TITLE_MEASURES, first_hour + 1)
        .expect("read")
        .expect("published");
    let clip = titles
        .iter()
        .find(|r| r["content_id"].int() as u64 == CLIP_A)
        .expect("clip row");
    assert_eq!(clip["decay"].float(), 0.125);
    assert_eq!(clip["views"].int(), 60 * 150);
    assert_eq!(clip["trend"].float(), 60.0 * 150.0 * 0.125);
    let _ = std::fs::remove_dir_all(&dir);
}
