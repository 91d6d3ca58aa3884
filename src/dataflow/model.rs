//! The model in the dataflow: windows over all measures, the catalog as a
//! collection, rollups along the hierarchy, and per-shard tables.
//!
//! ```text
//! facts (title, +m@pane) ─► window: +m@p, −m₁ₕ@p+W, −m₂₄ₕ@p+S ─┬──────────────► nodes
//!                                                               └─ ⋈ ancestors ─► rollups (show, channel, Σepisodes)
//! catalog (id, kind, parent, end) ─► ⋈ parent ─► info ─► ancestors
//! nodes + info + Σepisodes ─► ModelTables (per shard) ─► ModelHour, live board
//! ```
//!
//! The catalog is a collection like any other: a title that moves to another
//! show retracts its old ancestry and asserts the new one, and the join
//! moves its measures from one show to the other at that time.

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
    ancestors, node_rows, rank_all, resolve, CatalogEntry, Info, Measures, ModelSpec, NodeRow,
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

/// Side input of `ModelTables`: catalog info of its shard, and the episode total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Side {
    Info(ContentId, Info),
    Total(i64),
}

/// The windowed measures of `facts`: each update enters at its pane, its
/// window part leaves one window later and its score part one score window later.
pub fn windowed_facts<'scope>(
    facts: Facts<'scope>,
    window: &WindowSpec,
    spec: &ModelSpec,
) -> Facts<'scope> {
    let (width, score) = (window.panes(), spec.score_panes);
    facts
        .inner
        .flat_map(move |(id, t, m)| {
            let mut out = vec![(id, t, m)];
            let mut w = m.window_part();
            if !w.is_zero() {
                differential_dataflow::difference::Abelian::negate(&mut w);
                out.push((id, t + width, w));
            }
            let mut s = m.score_part();
            if !s.is_zero() {
                differential_dataflow::difference::Abelian::negate(&mut s);
                out.push((id, t + score, s));
            }
            out
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
pub fn model_tables<'scope>(
    windowed: Facts<'scope>,
    catalog: CatalogUpdates<'scope>,
    window: WindowSpec,
    spec: ModelSpec,
    stats: Arc<Stats>,
    live: Option<Arc<ModelBoard>>,
) -> StreamVec<'scope, Pane, ModelHour> {
    let info = catalog_info(catalog);
    let anc = info.clone().flat_map(|(id, info)| {
        let total = (info.kind == crate::catalog::Kind::Episode).then_some((TOTAL_NODE, true));
        ancestors(&info)
            .chain(total)
            .map(move |a| (id, a))
            .collect::<Vec<_>>()
    });
    // Measures move up the hierarchy by a join: the difference of the
    // output is the title's measures, keyed by the ancestor.
    let rollups = windowed
        .clone()
        .map(|id| (id, ()))
        .join_map(anc, |_id, _, &(a, with_24h)| (a, with_24h))
        .inner
        .flat_map(|((a, with_24h), t, mut m)| {
            if !with_24h {
                m.views_24h = 0;
            }
            (!m.is_zero()).then_some((a, t, m))
        });
    let total = rollups
        .clone()
        .filter(|(a, _, _)| *a == TOTAL_NODE)
        .map(|(_, t, m)| (Side::Total(m.views_24h), t, 1i64))
        .broadcast();
    let nodes = windowed
        .inner
        .concat(rollups.filter(|(a, _, _)| *a != TOTAL_NODE));
    let side = info
        .inner
        .map(|((id, info), t, r)| (Side::Info(id, info), t, r))
        .exchange(|(s, _, _)| match s {
            Side::Info(id, _) => shard(*id),
            Side::Total(_) => 0,
        })
        .concat(total);
    let worker = nodes.scope().index();
    let scope = nodes.scope();
    let publish_every = std::time::Duration::from_secs(1);
    nodes.binary_frontier::<_, CapacityContainerBuilder<Vec<ModelHour>>, _, _, _, _>(
        side,
        Exchange::new(|u: &(ContentId, Pane, Measures)| shard(u.0)),
        Pipeline,
        "ModelTables",
        move |initial, op| {
            let activator = scope.activator_for(op.address.clone());
            let mut held = Some(initial);
            let mut pending: BTreeMap<Pane, Pending> = BTreeMap::new();
            let mut measures: HashMap<ContentId, Measures> = HashMap::new();
            // Info with its multiplicity: a title is known while its count is positive.
            let mut infos: HashMap<ContentId, Vec<(Info, i64)>> = HashMap::new();
            let mut info_view: HashMap<ContentId, Info> = HashMap::new();
            let mut total: i64 = 0;
            let mut cursor: Pane = 0;
            let mut last_publish = std::time::Instant::now() - publish_every;
            let mut dirty = false;
            let mut state: i64 = 0;
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
                        while !measures.is_empty() {
                            let end = window.last_pane_of_hour(window.hour_of(cursor));
                            if end >= upto {
                                break;
                            }
                            let t = window.window_bounds(end).1;
                            let rows =
                                node_rows(&measures, &info_view, total, t, spec.half_life_ms);
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
                            cursor = end + 1;
                        }
                    }
                    if next.is_none() && dirty {
                        if let (Some(board), Some(b)) = (live.as_ref(), bound) {
                            let since = last_publish.elapsed();
                            if since >= publish_every {
                                let as_of = b.saturating_sub(1);
                                let t = window.window_bounds(as_of).1;
                                board.publish(
                                    worker,
                                    ModelShard {
                                        as_of,
                                        rows: Arc::new(node_rows(
                                            &measures,
                                            &info_view,
                                            total,
                                            t,
                                            spec.half_life_ms,
                                        )),
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
                    if let Some((facts, sides)) = pending.remove(&time) {
                        for (id, m) in facts {
                            let entry = measures.entry(id).or_default();
                            entry.add(&m);
                            if entry.is_zero() {
                                measures.remove(&id);
                            }
                        }
                        let mut touched = Vec::new();
                        for (side, r) in sides {
                            match side {
                                Side::Total(v) => total += v * r,
                                Side::Info(id, info) => {
                                    // Retractions and assertions of one time come in any order:
                                    // count each value, the current one is the one left positive.
                                    let list = infos.entry(id).or_default();
                                    match list.iter_mut().find(|(i, _)| *i == info) {
                                        Some(e) => e.1 += r,
                                        None => list.push((info, r)),
                                    }
                                    touched.push(id);
                                }
                            }
                        }
                        for id in touched {
                            let Some(list) = infos.get_mut(&id) else {
                                continue;
                            };
                            list.retain(|(_, n)| *n != 0);
                            match list.iter().find(|(_, n)| *n > 0) {
                                Some((i, _)) => info_view.insert(id, *i),
                                None => info_view.remove(&id),
                            };
                            if list.is_empty() {
                                infos.remove(&id);
                            }
                        }
                    }
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
