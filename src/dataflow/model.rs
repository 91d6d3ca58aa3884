//! The model in the dataflow: windows over all measures, the catalog as a
//! collection, rollups along the hierarchy, and per-shard tables.
//!
//! ```text
//! facts (title, +m@pane) ─► WindowFacts: +m@p, then −m₁ₕ@p+W, −m₂₄ₕ@p+S when their time comes
//!                              │ (exchange by title)
//! catalog ─► ⋈ parent ─► info ─┼─► ModelTitles: title measures, forwards deltas to ancestors ─┐
//!                              │                                                               │ Combine, exchange by node
//!                              └─► ModelNodes: shows, channels; Σ episodes (broadcast) ◄───────┘
//! ModelTitles + ModelNodes ─► FinishHours (episode scores, ranking candidates) ─► ModelHour
//! ```
//!
//! The catalog is a collection like any other: a title that moves to another
//! show retracts its old info and asserts the new one, and the title shard
//! moves its current measures from the old show to the new one at that time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Filter, Map};
use timely::dataflow::operators::{Concat, Exchange as _};
use timely::dataflow::StreamVec;

use super::{follow_frontier, shard};
use crate::event::ContentId;
use crate::model::{
    node_rows, rank_all, resolve, CatalogEntry, Info, Measures, ModelSpec, NodeRow,
};
use crate::stats::Stats;
use crate::time::{Pane, WindowSpec};

/// The pseudo-node that accumulates every episode's score-window views.
pub const TOTAL_NODE: ContentId = u64::MAX;

/// Per-title measures as a collection: the difference is the measures.
pub type Facts<'scope> = VecCollection<'scope, Pane, ContentId, Measures>;
/// The catalog as a collection.
pub type CatalogUpdates<'scope> = VecCollection<'scope, Pane, CatalogEntry, i64>;

/// One worker's share of the model as of an hour's last pane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelHour {
    /// Hours since the epoch.
    pub hour: u64,
    /// The worker that owns these nodes.
    pub worker: usize,
    /// Nodes with nonzero measures, by id.
    pub rows: Vec<NodeRow>,
    /// The rows that made any of this shard's top-k lists (the candidates
    /// for the global rankings).
    pub candidates: Vec<NodeRow>,
    /// Score-window views of all episodes.
    pub total_24h: i64,
}

/// The model as of the latest pane each worker has completed, for the API.
#[derive(Debug, Default)]
pub struct ModelBoard {
    shards: Mutex<BTreeMap<usize, ModelShard>>,
}

/// One worker's share of the live model.
#[derive(Clone, Debug, Default)]
pub struct ModelShard {
    /// The last pane whose updates are all applied.
    pub as_of: Pane,
    /// Node rows, by id.
    pub rows: Arc<Vec<NodeRow>>,
    /// Score-window views of all episodes.
    pub total_24h: i64,
}

impl ModelBoard {
    /// Replaces a worker's shard.
    pub fn publish(&self, worker: usize, shard: ModelShard) {
        if let Ok(mut s) = self.shards.lock() {
            s.insert(worker, shard);
        }
    }
    /// Every shard published so far.
    pub fn shards(&self) -> BTreeMap<usize, ModelShard> {
        self.shards.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Updates of one time waiting for the frontier: measures, and side updates.
type Pending = (Vec<(ContentId, Measures)>, Vec<(Side, i64)>);

/// A fast hasher for maps keyed by content id.
type Fx = std::hash::BuildHasherDefault<crate::pipeline::FxHasher>;

/// Side input of `ModelTables`: catalog info of its shard, and the episode total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Side {
    Info(ContentId, Info),
    Total(i64),
}

/// The windowed measures of `facts`: each update enters at its pane, its
/// window part leaves one window later and its score part one score window
/// later.
///
/// The leaving updates are held here and released only once the input
/// frontier reaches their time. Handing them on at once, stamped with a
/// future time, would park a day of them in the batcher of every
/// arrangement downstream, which re-sorts what it holds at each pane.
pub fn windowed_facts<'scope>(
    facts: Facts<'scope>,
    window: &WindowSpec,
    spec: &ModelSpec,
) -> Facts<'scope> {
    let (width, score) = (window.panes(), spec.score_panes);
    facts
        .inner
        .unary_frontier(Pipeline, "WindowFacts", move |initial, _info| {
            let mut held = Some(initial);
            // What leaves the window (whole measures, for a window) and what
            // leaves the score window (24-hour views only, for a day): kept
            // apart, so the long wait holds 16 bytes per title and pane, not 168.
            let mut leaving: BTreeMap<Pane, Vec<(ContentId, Measures)>> = BTreeMap::new();
            let mut leaving_24h: BTreeMap<Pane, Vec<(ContentId, i64)>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let mut session = output.session(&cap);
                    for (id, t, m) in data.drain(..) {
                        let mut w = m.window_part();
                        if !w.is_zero() {
                            differential_dataflow::difference::Abelian::negate(&mut w);
                            leaving.entry(t + width).or_default().push((id, w));
                        }
                        if m.views_24h != 0 {
                            leaving_24h
                                .entry(t + score)
                                .or_default()
                                .push((id, -m.views_24h));
                        }
                        session.give((id, t, m));
                    }
                });
                let bound = frontier.frontier().first().copied();
                let first =
                    |a: &BTreeMap<Pane, Vec<(ContentId, Measures)>>,
                     b: &BTreeMap<Pane, Vec<(ContentId, i64)>>| {
                        match (a.first_key_value(), b.first_key_value()) {
                            (Some((x, _)), Some((y, _))) => Some(*x.min(y)),
                            (Some((x, _)), None) => Some(*x),
                            (None, Some((y, _))) => Some(*y),
                            (None, None) => None,
                        }
                    };
                if let Some(cap) = held.as_ref() {
                    while let Some(t) = first(&leaving, &leaving_24h) {
                        if bound.is_some_and(|b| t >= b) {
                            break;
                        }
                        let at = cap.delayed(&t);
                        let mut session = output.session(&at);
                        for (id, m) in leaving.remove(&t).unwrap_or_default() {
                            session.give((id, t, m));
                        }
                        for (id, v) in leaving_24h.remove(&t).unwrap_or_default() {
                            let m = Measures {
                                views_24h: v,
                                ..Measures::default()
                            };
                            session.give((id, t, m));
                        }
                    }
                }
                // Keep a capability for the earliest update still to leave.
                match (bound, first(&leaving, &leaving_24h)) {
                    (Some(b), Some(t)) => follow_frontier(&mut held, Some(b.min(t))),
                    (Some(b), None) => follow_frontier(&mut held, Some(b)),
                    (None, Some(t)) => follow_frontier(&mut held, Some(t)),
                    (None, None) => held = None,
                }
            }
        })
        .as_collection()
}

/// Resolves catalog entries to [`Info`] through their parents.
pub fn catalog_info<'scope>(
    catalog: CatalogUpdates<'scope>,
) -> VecCollection<'scope, Pane, (ContentId, Info), i64> {
    let by_parent = catalog
        .clone()
        .flat_map(|(id, (kind, parent, end))| parent.map(|p| (p, (id, kind, end))));
    let with_parent = by_parent.join_map(catalog.clone(), |p, &(id, kind, end), &parents| {
        (id, resolve(kind, Some(*p), end, Some(parents)))
    });
    let roots = catalog
        .filter(|(_, (_, parent, _))| parent.is_none())
        .map(|(id, (kind, parent, end))| (id, resolve(kind, parent, end, None)));
    with_parent.concat(roots)
}

/// Builds the model from windowed facts and the catalog; emits each
/// worker's [`ModelHour`] at the last pane of every hour and publishes the
/// live model to `live`.
///
/// Titles and their catalog info are both keyed by title, so the join that
/// moves measures up the hierarchy runs inside the title shard, in time
/// order: a fact updates its title and is forwarded to the title's current
/// ancestors; a catalog change moves the title's current measures from the
/// old ancestors to the new ones. This is the incremental join, specialised
/// to one side (the catalog) being small and co-partitioned.
pub fn model_tables<'scope>(
    windowed: Facts<'scope>,
    catalog: CatalogUpdates<'scope>,
    window: WindowSpec,
    spec: ModelSpec,
    stats: Arc<Stats>,
    live: Option<Arc<ModelBoard>>,
) -> StreamVec<'scope, Pane, ModelHour> {
    let info = catalog_info(catalog)
        .inner
        .exchange(|((id, _), _, _)| shard(*id))
        .map(|((id, info), t, r)| (Side::Info(id, info), t, r));
    let titles = shard_stage(
        windowed.inner,
        info.clone(),
        true,
        window,
        spec,
        stats.clone(),
        live.clone(),
    );
    let deltas = combine(titles.clone().flat_map(|out| match out {
        StageOut::Delta(id, t, m) => Some((id, t, m)),
        StageOut::Hour(_) => None,
    }));
    let total = deltas
        .clone()
        .filter(|(a, _, _)| *a == TOTAL_NODE)
        .map(|(_, t, m)| (Side::Total(m.views_24h), t, 1i64))
        .broadcast();
    let nodes = shard_stage(
        deltas.filter(|(a, _, _)| *a != TOTAL_NODE),
        info.concat(total),
        false,
        window,
        spec,
        stats,
        live,
    );
    let hours = titles.concat(nodes).flat_map(|out| match out {
        StageOut::Hour(h) => Some(h),
        StageOut::Delta(..) => None,
    });
    finish_hours(hours, window, spec)
}

/// What a shard stage emits: its rows of an hour, or (titles) a measure
/// delta for an ancestor at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum StageOut {
    Hour(ModelHour),
    Delta(ContentId, Pane, Measures),
}

/// Where a title's measures go: shows and channels to their own node (they
/// are rows of the node stage), everything else to its ancestors, episodes'
/// score-window views also to the episode total. At most three targets, so
/// no allocation per fact.
fn targets(info: Option<&Info>) -> impl Iterator<Item = (ContentId, bool)> {
    use crate::catalog::Kind;
    let mut out = [None; 3];
    if let Some(i) = info.filter(|i| !matches!(i.kind, Kind::Show | Kind::Channel)) {
        let episode = i.kind == Kind::Episode;
        out[0] = i.show.map(|s| (s, episode));
        out[1] = i.channel.map(|c| (c, episode));
        out[2] = episode.then_some((TOTAL_NODE, true));
    }
    out.into_iter().flatten()
}

/// Whether a node's own facts go to the node stage (shows, channels).
fn forwards_itself(info: Option<&Info>) -> bool {
    use crate::catalog::Kind;
    matches!(info.map(|i| i.kind), Some(Kind::Show | Kind::Channel))
}

fn masked(m: &Measures, with_24h: bool) -> Measures {
    if with_24h {
        *m
    } else {
        Measures { views_24h: 0, ..*m }
    }
}

/// One shard of titles (`titles = true`) or of shows and channels: applies
/// its updates in time order as the frontier allows, emits its rows at the
/// last pane of every hour, and (titles) forwards deltas to ancestors.
#[allow(clippy::too_many_arguments)]
fn shard_stage<'scope>(
    facts: StreamVec<'scope, Pane, (ContentId, Pane, Measures)>,
    side: StreamVec<'scope, Pane, (Side, Pane, i64)>,
    titles: bool,
    window: WindowSpec,
    spec: ModelSpec,
    stats: Arc<Stats>,
    live: Option<Arc<ModelBoard>>,
) -> StreamVec<'scope, Pane, StageOut> {
    let worker = facts.scope().index();
    let scope = facts.scope();
    let publish_every = std::time::Duration::from_secs(1);
    let board_key = worker * 2 + usize::from(!titles);
    facts.binary_frontier::<_, CapacityContainerBuilder<Vec<StageOut>>, _, _, _, _>(
        side,
        Exchange::new(|u: &(ContentId, Pane, Measures)| shard(u.0)),
        Pipeline,
        if titles { "ModelTitles" } else { "ModelNodes" },
        move |initial, op| {
            let activator = scope.activator_for(op.address.clone());
            let mut held = Some(initial);
            let mut pending: BTreeMap<Pane, Pending> = BTreeMap::new();
            let mut measures: HashMap<ContentId, Measures, Fx> = HashMap::default();
            // Info with its multiplicity: a title is known while its count is positive.
            let mut infos: HashMap<ContentId, Vec<(Info, i64)>, Fx> = HashMap::default();
            let mut info_view: HashMap<ContentId, Info, Fx> = HashMap::default();
            let mut total: i64 = 0;
            let mut cursor: Pane = 0;
            let mut last_publish = std::time::Instant::now() - publish_every;
            let mut dirty = false;
            let mut published_bound: Option<Pane> = None;
            let mut state: i64 = 0;
            let rows_of = move |measures: &HashMap<ContentId, Measures, Fx>,
                                info_view: &HashMap<ContentId, Info, Fx>,
                                total: i64,
                                t: crate::time::Millis| {
                let shown = measures
                    .iter()
                    .filter(|(id, _)| !(titles && forwards_itself(info_view.get(id))));
                node_rows(shown, info_view, total, t, spec.half_life_ms)
            };
            move |(input1, frontier1), (input2, frontier2), output| {
                input1.for_each(|_cap, data| {
                    for (id, t, m) in data.drain(..) {
                        pending.entry(t).or_default().0.push((id, m));
                    }
                });
                input2.for_each(|_cap, data| {
                    for (s, t, r) in data.drain(..) {
                        pending.entry(t).or_default().1.push((s, r));
                    }
                });
                let bound: Option<Pane> =
                    [frontier1.frontier().first(), frontier2.frontier().first()]
                        .into_iter()
                        .flatten()
                        .min()
                        .copied();
                loop {
                    let next = pending
                        .first_key_value()
                        .map(|(t, _)| *t)
                        .filter(|t| bound.is_none_or(|b| *t < b));
                    if let (Some(upto), Some(cap)) = (next.or(bound), held.as_ref()) {
                        while !measures.is_empty() || total != 0 {
                            let end = window.last_pane_of_hour(window.hour_of(cursor));
                            if end >= upto {
                                break;
                            }
                            let t = window.window_bounds(end).1;
                            output
                                .session(&cap.delayed(&end))
                                .give(StageOut::Hour(ModelHour {
                                    hour: window.hour_of(end),
                                    worker,
                                    rows: rows_of(&measures, &info_view, total, t),
                                    candidates: Vec::new(),
                                    total_24h: total,
                                }));
                            cursor = end + 1;
                        }
                    }
                    if next.is_none()
                        && (dirty || bound.is_some_and(|b| Some(b) != published_bound))
                    {
                        if let (Some(board), Some(b)) = (live.as_ref(), bound) {
                            let since = last_publish.elapsed();
                            if since >= publish_every {
                                let as_of = b.saturating_sub(1);
                                let t = window.window_bounds(as_of).1;
                                published_bound = Some(b);
                                board.publish(
                                    board_key,
                                    ModelShard {
                                        as_of,
                                        rows: Arc::new(rows_of(&measures, &info_view, total, t)),
                                        total_24h: total,
                                    },
                                );
                                last_publish = std::time::Instant::now();
                                dirty = false;
                            } else {
                                activator.activate_after(publish_every - since);
                            }
                        }
                    }
                    let Some(time) = next else { break };
                    let Some((facts, sides)) = pending.remove(&time) else {
                        break;
                    };
                    let Some(cap) = held.as_ref() else { break };
                    let at = cap.delayed(&time);
                    let mut session = output.session(&at);
                    // Episodes' contributions to the episode total, summed here:
                    // one update per time instead of one per episode.
                    let mut episode_total: i64 = 0;
                    // Catalog changes first, with the measures as of before this time.
                    let mut touched = Vec::new();
                    for (side, r) in sides {
                        match side {
                            Side::Total(v) => total += v * r,
                            Side::Info(id, info) => {
                                // Retractions and assertions of one time come in any order:
                                // count each value; the current one is the one left positive.
                                let list = infos.entry(id).or_default();
                                match list.iter_mut().find(|(i, _)| *i == info) {
                                    Some(e) => e.1 += r,
                                    None => list.push((info, r)),
                                }
                                touched.push(id);
                            }
                        }
                    }
                    touched.sort_unstable();
                    touched.dedup();
                    for id in touched {
                        let Some(list) = infos.get_mut(&id) else {
                            continue;
                        };
                        list.retain(|(_, n)| *n != 0);
                        let now = list.iter().find(|(_, n)| *n > 0).map(|(i, _)| *i);
                        if list.is_empty() {
                            infos.remove(&id);
                        }
                        let before = match now {
                            Some(i) => info_view.insert(id, i),
                            None => info_view.remove(&id),
                        };
                        if titles && before != now {
                            if let Some(m) = measures.get(&id) {
                                let mut gone = *m;
                                differential_dataflow::difference::Abelian::negate(&mut gone);
                                for (a, with_24h) in targets(before.as_ref()) {
                                    if a == TOTAL_NODE {
                                        episode_total += gone.views_24h;
                                    } else {
                                        session.give(StageOut::Delta(
                                            a,
                                            time,
                                            masked(&gone, with_24h),
                                        ));
                                    }
                                }
                                if forwards_itself(before.as_ref()) {
                                    session.give(StageOut::Delta(id, time, gone));
                                }
                                for (a, with_24h) in targets(now.as_ref()) {
                                    if a == TOTAL_NODE {
                                        episode_total += m.views_24h;
                                    } else {
                                        session.give(StageOut::Delta(a, time, masked(m, with_24h)));
                                    }
                                }
                                if forwards_itself(now.as_ref()) {
                                    session.give(StageOut::Delta(id, time, *m));
                                }
                            }
                        }
                    }
                    for (id, m) in facts {
                        if titles {
                            let info = info_view.get(&id);
                            for (a, with_24h) in targets(info) {
                                if a == TOTAL_NODE {
                                    episode_total += m.views_24h;
                                } else {
                                    session.give(StageOut::Delta(a, time, masked(&m, with_24h)));
                                }
                            }
                            if forwards_itself(info) {
                                session.give(StageOut::Delta(id, time, m));
                            }
                        }
                        let entry = measures.entry(id).or_default();
                        entry.add(&m);
                        if entry.is_zero() {
                            measures.remove(&id);
                        }
                    }
                    if episode_total != 0 {
                        let m = Measures {
                            views_24h: episode_total,
                            ..Measures::default()
                        };
                        session.give(StageOut::Delta(TOTAL_NODE, time, m));
                    }
                    drop(session);
                    cursor = time;
                    dirty = true;
                }
                follow_frontier(&mut held, bound);
                let now = pending
                    .values()
                    .map(|(a, b)| (a.len() + b.len()) as i64)
                    .sum::<i64>()
                    + measures.len() as i64;
                stats.live_state_delta(now - state);
                state = now;
            }
        },
    )
}

/// Joins the title stage's and the node stage's hours of each worker:
/// episode scores need the episode total the node stage holds; then picks
/// the worker's ranking candidates.
fn finish_hours<'scope>(
    hours: StreamVec<'scope, Pane, ModelHour>,
    window: WindowSpec,
    spec: ModelSpec,
) -> StreamVec<'scope, Pane, ModelHour> {
    hours.unary_frontier(Pipeline, "FinishHours", move |initial, _info| {
        let mut held = Some(initial);
        let mut pending: BTreeMap<Pane, Vec<ModelHour>> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|_cap, data| {
                for h in data.drain(..) {
                    pending
                        .entry(window.last_pane_of_hour(h.hour))
                        .or_default()
                        .push(h);
                }
            });
            let bound = frontier.frontier().first().copied();
            if let Some(cap) = held.as_ref() {
                while let Some((&end, _)) = pending.first_key_value() {
                    if bound.is_some_and(|b| end >= b) {
                        break;
                    }
                    let Some(parts) = pending.remove(&end) else {
                        break;
                    };
                    let total = parts.iter().map(|h| h.total_24h).max().unwrap_or(0);
                    let worker = parts.first().map_or(0, |h| h.worker);
                    let mut rows: Vec<NodeRow> = parts.into_iter().flat_map(|h| h.rows).collect();
                    for r in rows.iter_mut() {
                        if r.info.map(|i| i.kind) == Some(crate::catalog::Kind::Episode) {
                            r.score_ppm = crate::model::score_ppm(r.m.views_24h, total);
                        }
                    }
                    rows.sort_unstable_by_key(|r| r.id);
                    if rows.is_empty() {
                        continue;
                    }
                    let top = rank_all(&rows, spec.top_k);
                    let picked: std::collections::HashSet<ContentId> =
                        top.iter().map(|e| e.id).collect();
                    let candidates = rows
                        .iter()
                        .filter(|r| picked.contains(&r.id))
                        .cloned()
                        .collect();
                    output.session(&cap.delayed(&end)).give(ModelHour {
                        hour: window.hour_of(end),
                        worker,
                        rows,
                        candidates,
                        total_24h: total,
                    });
                }
            }
            follow_frontier(&mut held, bound);
        }
    })
}

/// Sums the updates of each (node, time) on this worker and emits them once
/// the input frontier has passed the time: a combiner in front of an exchange.
fn combine<'scope>(
    updates: StreamVec<'scope, Pane, (ContentId, Pane, Measures)>,
) -> StreamVec<'scope, Pane, (ContentId, Pane, Measures)> {
    updates.unary_frontier(Pipeline, "Combine", |initial, _info| {
        let mut held = Some(initial);
        let mut sums: BTreeMap<Pane, HashMap<ContentId, Measures, Fx>> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|_cap, data| {
                for (id, t, m) in data.drain(..) {
                    sums.entry(t).or_default().entry(id).or_default().add(&m);
                }
            });
            let bound = frontier.frontier().first().copied();
            if let Some(cap) = held.as_ref() {
                while let Some((&t, _)) = sums.first_key_value() {
                    if bound.is_some_and(|b| t >= b) {
                        break;
                    }
                    let Some(batch) = sums.remove(&t) else { break };
                    let at = cap.delayed(&t);
                    let mut session = output.session(&at);
                    for (id, m) in batch {
                        if !m.is_zero() {
                            session.give((id, t, m));
                        }
                    }
                }
            }
            follow_frontier(&mut held, bound);
        }
    })
}
