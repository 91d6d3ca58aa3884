//! A from-scratch recount: what the hourly snapshots must contain.
//!
//! Given the records of each partition in order, this replays the
//! pipeline's *definition* (decode, per-partition watermark, late events
//! dropped, views counted in the window ending at each hour's last pane)
//! with none of its machinery: no dataflow, no incremental state, no
//! batching. Tests compare the pipeline's output against it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::event::{ContentId, EventType, Validation, WatchEvent};
use crate::generator::{GenItem, Generator};
use crate::time::{Millis, Watermark, WindowSpec};

/// What the pipeline must produce for some input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Every hour that must be published, with its nonzero counts (empty for gap hours).
    pub hours: BTreeMap<u64, BTreeMap<ContentId, i64>>,
    /// Dead letters by reason code.
    pub dead_letters: BTreeMap<String, u64>,
    /// Records in total.
    pub records: u64,
    /// Views counted.
    pub views: u64,
    /// Every rejected record: (partition index, record index within it, reason).
    pub rejected: Vec<(usize, usize, String)>,
}

/// Recounts from scratch. `partitions[k]` holds partition `k`'s raw records in order.
pub fn recount(
    partitions: &[Vec<Vec<u8>>],
    window: &WindowSpec,
    lateness: Millis,
    limits: &Validation,
) -> Expected {
    let mut out = Expected::default();
    let mut accepted: Vec<(ContentId, u64)> = Vec::new();
    for (k, records) in partitions.iter().enumerate() {
        let mut mark = Watermark::new(lateness);
        for (i, raw) in records.iter().enumerate() {
            out.records += 1;
            let event = match WatchEvent::decode(raw, limits) {
                Ok(e) => e,
                Err(e) => {
                    *out.dead_letters.entry(e.code().to_string()).or_insert(0) += 1;
                    out.rejected.push((k, i, e.code().to_string()));
                    continue;
                }
            };
            if mark.is_late(event.event_time, window) {
                *out.dead_letters.entry("late".to_string()).or_insert(0) += 1;
                out.rejected.push((k, i, "late".to_string()));
                continue;
            }
            mark.observe(event.event_time);
            if event.event_type == EventType::StartedVideo {
                if let Some(p) = window.pane_of(event.event_time) {
                    accepted.push((event.content_id, p));
                }
            }
        }
    }
    out.views = accepted.len() as u64;
    // Each view counts in every hour whose closing window contains its pane.
    for (content, pane) in accepted {
        let first_hour = window.hour_of(pane);
        let last_hour = window.hour_of(pane + window.panes() - 1);
        for hour in first_hour..=last_hour {
            let end = window.last_pane_of_hour(hour);
            if pane <= end && pane + window.panes() > end {
                *out.hours
                    .entry(hour)
                    .or_default()
                    .entry(content)
                    .or_insert(0) += 1;
            }
        }
    }
    // Hours between published hours are published too, empty.
    if let (Some(&first), Some(&last)) = (out.hours.keys().next(), out.hours.keys().next_back()) {
        for h in first..=last {
            out.hours.entry(h).or_default();
        }
    }
    out
}

/// Views in the window ending at `pane`, recounted from scratch (same acceptance rules as [`recount`]).
pub fn window_at(
    partitions: &[Vec<Vec<u8>>],
    window: &WindowSpec,
    lateness: Millis,
    limits: &Validation,
    pane: u64,
) -> BTreeMap<ContentId, i64> {
    let mut out = BTreeMap::new();
    for records in partitions {
        let mut mark = Watermark::new(lateness);
        for raw in records {
            let Ok(event) = WatchEvent::decode(raw, limits) else {
                continue;
            };
            if mark.is_late(event.event_time, window) {
                continue;
            }
            mark.observe(event.event_time);
            if event.event_type == EventType::StartedVideo {
                if let Some(p) = window.pane_of(event.event_time) {
                    if p <= pane && p + window.panes() > pane {
                        *out.entry(event.content_id).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    out
}

/// The records of a JSON-lines file, cut into `peers` partitions as the file source does.
pub fn file_partitions(path: &Path, peers: usize) -> Result<Vec<Vec<Vec<u8>>>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let ranges = crate::source::file::splits(bytes.len() as u64, peers);
    let mut parts: Vec<Vec<Vec<u8>>> = vec![Vec::new(); ranges.len()];
    let mut at = 0usize;
    while at < bytes.len() {
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| at + i);
        let mut line = &bytes[at..end];
        if let Some(s) = line.strip_suffix(b"\r") {
            line = s;
        }
        let k = ranges
            .iter()
            .position(|&(s, e)| (at as u64) >= s && (at as u64) < e)
            .unwrap_or(0);
        parts[k].push(line.to_vec());
        at = end + 1;
    }
    Ok(parts)
}

/// The first `events` records of the generator, cut into `peers` partitions as the generator source does.
pub fn generator_partitions(generator: &Generator, events: u64, peers: usize) -> Vec<Vec<Vec<u8>>> {
    let mut parts: Vec<Vec<Vec<u8>>> = vec![Vec::new(); peers.max(1)];
    for i in 0..events {
        let raw = match generator.item(i) {
            GenItem::Event(e) => e.to_json().into_bytes(),
            GenItem::Malformed(s) => s.into_bytes(),
        };
        parts[(i % peers.max(1) as u64) as usize].push(raw);
    }
    parts
}
