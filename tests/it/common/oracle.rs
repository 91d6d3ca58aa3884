//! A from-scratch recount: what the hourly snapshots must contain.
//!
//! Given the records of each partition in order, this replays the
//! pipeline's *definition* (decode, per-partition watermark, late events
//! dropped, views counted in the window ending at each hour's last pane)
//! with none of its machinery: no dataflow, no incremental state, no
//! batching. Tests compare the pipeline's output against it.

use std::collections::BTreeMap;
use std::path::Path;

use popularity::core::clock::{ClockRule, PartitionClock, Verdict};
use popularity::core::error::{Error, Result};
use popularity::core::event::{ContentId, EventType, Validation, WatchEvent};
use popularity::core::time::WindowSpec;
use popularity::source::traffic::{GenItem, Generator};

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
    clock: impl Into<ClockRule>,
    limits: &Validation,
) -> Expected {
    let mut out = Expected::default();
    let mut accepted: Vec<(ContentId, u64)> = Vec::new();
    replay(partitions, window, clock.into(), limits, |k, i, outcome| {
        out.records += 1;
        match outcome {
            Err(reason) => {
                *out.dead_letters.entry(reason.to_string()).or_insert(0) += 1;
                out.rejected.push((k, i, reason.to_string()));
            }
            Ok(event) => {
                if event.event_type == EventType::StartedVideo {
                    if let Some(p) = window.pane_of(event.event_time) {
                        accepted.push((event.content_id, p));
                    }
                }
            }
        }
    });
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

/// Replays the pipeline's acceptance rules over each partition's records in
/// order (decode, then the partition's clock, [`popularity::core::clock`]): `visit(partition,
/// index, the event or the reason it is dead-lettered)`. The visits of one
/// partition come in the order the clock decides them (a held record is
/// decided after the records that corroborate or outlast it).
fn replay(
    partitions: &[Vec<Vec<u8>>],
    window: &WindowSpec,
    rule: ClockRule,
    limits: &Validation,
    mut visit: impl FnMut(usize, usize, std::result::Result<WatchEvent, &'static str>),
) {
    let mut decided = Vec::new();
    for (k, records) in partitions.iter().enumerate() {
        let mut clock = PartitionClock::new(rule, *window);
        for (i, raw) in records.iter().enumerate() {
            match WatchEvent::decode(raw, limits) {
                Err(e) => visit(k, i, Err(e.code())),
                Ok(event) => clock.offer(event.event_time, (i, event), &mut decided),
            }
            for ((i, event), _, verdict) in decided.drain(..) {
                visit(k, i, verdict_of(event, verdict));
            }
        }
        clock.finish(&mut decided);
        for ((i, event), _, verdict) in decided.drain(..) {
            visit(k, i, verdict_of(event, verdict));
        }
    }
}

fn verdict_of(
    event: WatchEvent,
    verdict: Verdict,
) -> std::result::Result<WatchEvent, &'static str> {
    match verdict {
        Verdict::Accept => Ok(event),
        Verdict::Late { .. } => Err("late"),
        Verdict::Skew { .. } => Err("clock_skew"),
    }
}

/// Views in the window ending at `pane`, recounted from scratch (same acceptance rules as [`recount`]).
pub fn window_at(
    partitions: &[Vec<Vec<u8>>],
    window: &WindowSpec,
    clock: impl Into<ClockRule>,
    limits: &Validation,
    pane: u64,
) -> BTreeMap<ContentId, i64> {
    let mut out = BTreeMap::new();
    replay(partitions, window, clock.into(), limits, |_, _, outcome| {
        let Ok(event) = outcome else { return };
        if event.event_type != EventType::StartedVideo {
            return;
        }
        if let Some(p) = window.pane_of(event.event_time) {
            if p <= pane && p + window.panes() > pane {
                *out.entry(event.content_id).or_insert(0) += 1;
            }
        }
    });
    out
}

/// The records of a JSON-lines file, cut into `partitions` partitions as the file source does.
pub fn file_partitions(path: &Path, partitions: usize) -> Result<Vec<Vec<Vec<u8>>>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let ranges = popularity::source::file::splits(bytes.len() as u64, partitions);
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

/// The first `events` records of the generator, cut into `partitions` partitions as the generator source does.
pub fn generator_partitions(
    generator: &Generator,
    events: u64,
    partitions: usize,
) -> Vec<Vec<Vec<u8>>> {
    let mut parts: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions.max(1)];
    for i in 0..events {
        let raw = match generator.item(i) {
            GenItem::Event(e) => e.to_json().into_bytes(),
            GenItem::Malformed(s) => s.into_bytes(),
        };
        parts[popularity::source::generator::partition_of(i, partitions) as usize].push(raw);
    }
    parts
}

/// One catalog change for [`recount_model`]: from pane `pane` on, title
/// `before` (if any) is replaced by `after` (if any).
#[derive(Clone, Debug)]
pub struct CatalogChangeAt {
    /// The pane it takes effect.
    pub pane: popularity::core::time::Pane,
    /// The title before.
    pub before: Option<popularity::core::catalog::Title>,
    /// The title after.
    pub after: Option<popularity::core::catalog::Title>,
}

/// The model recounted from scratch: for every hour with any nonzero
/// measure, the node rows (titles, shows, channels) and the rankings.
pub fn recount_model(
    partitions: &[Vec<Vec<u8>>],
    window: &WindowSpec,
    clock: impl Into<ClockRule>,
    limits: &Validation,
    spec: &popularity::core::model::ModelSpec,
    catalog: &popularity::core::catalog::Catalog,
    changes: &[CatalogChangeAt],
) -> BTreeMap<
    u64,
    (
        Vec<popularity::core::model::NodeRow>,
        Vec<popularity::core::model::TopEntry>,
    ),
> {
    let accepted = accepted_facts(partitions, window, clock, limits);
    let mut out = BTreeMap::new();
    let (Some(first), Some(last)) = (
        accepted.iter().map(|a| a.1).min(),
        accepted.iter().map(|a| a.1).max(),
    ) else {
        return out;
    };
    for hour in window.hour_of(first)..=window.hour_of(last + spec.score_panes) {
        let rows = model_rows_at(
            &accepted,
            window,
            spec,
            catalog,
            changes,
            window.last_pane_of_hour(hour),
        );
        if rows.is_empty() {
            continue;
        }
        let top = popularity::core::model::rank_all(&rows, spec.top_k);
        out.insert(hour, (rows, top));
    }
    out
}

/// The model recounted at one pane: every node row as of the window ending at `end`.
pub fn model_at(
    partitions: &[Vec<Vec<u8>>],
    window: &WindowSpec,
    clock: impl Into<ClockRule>,
    limits: &Validation,
    spec: &popularity::core::model::ModelSpec,
    catalog: &popularity::core::catalog::Catalog,
    end: popularity::core::time::Pane,
) -> Vec<popularity::core::model::NodeRow> {
    let accepted = accepted_facts(partitions, window, clock, limits);
    model_rows_at(&accepted, window, spec, catalog, &[], end)
}

/// Accepted events as (title, pane, measures), by the pipeline's rules.
fn accepted_facts(
    partitions: &[Vec<Vec<u8>>],
    window: &WindowSpec,
    clock: impl Into<ClockRule>,
    limits: &Validation,
) -> Vec<(ContentId, u64, popularity::core::model::Measures)> {
    let mut accepted = Vec::new();
    replay(partitions, window, clock.into(), limits, |_, _, outcome| {
        if let Ok(event) = outcome {
            if let Some(p) = window.pane_of(event.event_time) {
                accepted.push((
                    event.content_id,
                    p,
                    popularity::core::model::Measures::of_event(&event),
                ));
            }
        }
    });
    accepted
}

fn model_rows_at(
    accepted: &[(ContentId, u64, popularity::core::model::Measures)],
    window: &WindowSpec,
    spec: &popularity::core::model::ModelSpec,
    catalog: &popularity::core::catalog::Catalog,
    changes: &[CatalogChangeAt],
    end: popularity::core::time::Pane,
) -> Vec<popularity::core::model::NodeRow> {
    use popularity::core::model::{ancestors, node_rows, resolve, Info, Measures};
    use std::collections::HashMap;
    // The catalog as of `end`.
    let mut titles: HashMap<ContentId, popularity::core::catalog::Title> =
        catalog.titles.iter().map(|t| (t.id, t.clone())).collect();
    for c in changes.iter().filter(|c| c.pane <= end) {
        if let Some(b) = &c.before {
            titles.remove(&b.id);
        }
        if let Some(a) = &c.after {
            titles.insert(a.id, a.clone());
        }
    }
    let info: HashMap<ContentId, Info> = titles
        .values()
        .filter_map(|t| {
            let parent = match t.parent {
                Some(p) => Some(titles.get(&p).map(|pt| (pt.kind, pt.parent, pt.ends_at))?),
                None => None,
            };
            Some((t.id, resolve(t.kind, t.parent, t.ends_at, parent)))
        })
        .collect();
    let mut measures: HashMap<ContentId, Measures> = HashMap::new();
    for (id, pane, m) in accepted {
        let mut part = Measures::default();
        if *pane <= end && pane + window.panes() > end {
            part.add(&m.window_part());
        }
        // Views leave the score window together, a window after their step began.
        let step_start = pane - pane % spec.score_step;
        if *pane <= end && step_start + spec.score_panes > end {
            part.add(&m.score_part());
        }
        if !part.is_zero() {
            measures.entry(*id).or_default().add(&part);
        }
    }
    let mut nodes = measures.clone();
    let mut total = 0;
    for (id, m) in &measures {
        let Some(i) = info.get(id) else { continue };
        if i.kind == popularity::core::catalog::Kind::Episode {
            total += m.views_24h;
        }
        for (a, with_24h) in ancestors(i) {
            let mut up = *m;
            if !with_24h {
                up.views_24h = 0;
            }
            nodes.entry(a).or_default().add(&up);
        }
    }
    let t = window.window_bounds(end).1;
    node_rows(&nodes, &info, total, t, spec.half_life_ms)
}

/// [`recount`] with the default job's rules: the hourly window and a
/// two-minute lateness.
pub fn recount_hourly(partitions: &[Vec<Vec<u8>>]) -> Expected {
    recount(partitions, &WindowSpec::hourly(), 120_000, &super::limits())
}
