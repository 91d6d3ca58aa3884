//! The model in the dataflow: windows over all measures, the catalog as a
//! collection, rollups along the hierarchy, and per-shard tables.
//!
//! ```text
//! facts ((title, cell), +obs@pane) ──────────── exchange by title ──┐
//! catalog ─► ⋈ parent ─► info ───────────────── exchange by title ──┤
//!                                                                   ▼
//! ModelTitles: +obs@p, −obs@p+W, −views@p+S as the frontier reaches them;
//!              title measures; changes forwarded along each title's route ─┐
//!                                   deltas by node and block (exchange),   │
//!                                   Σ episodes (broadcast)                 ▼
//! ModelNodes: shows, channels ◄────────────────────────────────────────────┘
//! ModelTitles + ModelNodes ─► FinishHours (episode scores, ranking candidates) ─► ModelHour
//! ```
//!
//! The catalog is a collection like any other: a title that moves to another
//! show retracts its old info and asserts the new one, and the title shard
//! moves its current measures from the old show to the new one at that time.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Filter, Map, Partition};
use timely::dataflow::operators::{Concat, Exchange as _};
use timely::dataflow::StreamVec;

mod blocks;
mod early;
mod exits;
mod slots;
mod stage;

use slots::{forwards_itself, targets};
use stage::{shard_stage, StageSpec};

use super::live::{flushed, LiveUpdate, Publish};
use super::{follow_frontier, shard, HourTable};
use crate::core::catalog::Kind;
use crate::core::event::ContentId;
use crate::core::model::{
    give_back, rank_picked, resolve, CatalogEntry, Cell, Info, Measures, ModelSpec, NodeRow, Obs,
    Rollup,
};
use crate::core::stats::Stats;
use crate::core::time::{Pane, WindowSpec};

/// The pseudo-node that accumulates every episode's score-window views.
pub const TOTAL_NODE: ContentId = u64::MAX;

/// Views and watch time by title and cell: the model's input.
pub type Facts<'scope> = VecCollection<'scope, Pane, (ContentId, Cell), Obs>;
/// Per-title measures already windowed (carried over a restore).
pub type Windowed<'scope> = VecCollection<'scope, Pane, ContentId, Measures>;
/// The catalog as a collection.
pub type CatalogUpdates<'scope> = VecCollection<'scope, Pane, CatalogEntry, i64>;

/// One worker's share of the model as of an hour's last pane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelHour {
    /// Hours since the epoch.
    pub hour: u64,
    /// The worker that owns these nodes.
    pub worker: usize,
    /// Nodes with nonzero measures: the titles, then the shows and
    /// channels, each in id order.
    pub rows: Vec<NodeRow>,
    /// The rows that made any of this shard's top-k lists (the candidates
    /// for the global rankings).
    pub candidates: Vec<NodeRow>,
    /// Score-window views of all episodes.
    pub total_24h: i64,
}

/// A fast hasher for maps keyed by content id.
type Fx = rustc_hash::FxBuildHasher;

/// Side input of a shard stage: catalog info of its shard, the episode
/// total, and (after a restore) measures already windowed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Side {
    Info(ContentId, Info),
    Total(i64),
    Windowed(ContentId, Measures),
}

/// Updates of one time waiting for the frontier: measures, and side updates.
type Pending = (Vec<(ContentId, Cell, Obs)>, Vec<(Side, i64)>);

/// Resolves catalog entries to [`Info`] through their parents.
pub fn catalog_info<'scope>(
    catalog: CatalogUpdates<'scope>,
) -> VecCollection<'scope, Pane, (ContentId, Info), i64> {
    let by_parent = catalog
        .clone()
        .flat_map(|(id, (kind, parent, end))| parent.map(|p| (p, (id, kind, end))));
    // Only channels, shows and live events have children (the catalog's
    // rules, `check_title`): the join's right side is those, not every title.
    let parents = catalog
        .clone()
        .filter(|(_, (kind, _, _))| matches!(kind, Kind::Channel | Kind::Show | Kind::Live));
    let with_parent = by_parent.join_map(parents, |p, &(id, kind, end), &parents| {
        (id, resolve(kind, Some(*p), end, Some(parents)))
    });
    let roots = catalog
        .filter(|(_, (_, parent, _))| parent.is_none())
        .map(|(id, (kind, parent, end))| (id, resolve(kind, parent, end, None)));
    with_parent.concat(roots)
}

/// Builds the model from per-title facts, measures carried over a restore
/// (already windowed) and the catalog; emits each worker's [`ModelHour`] at
/// the last pane of every hour, and (when `live`) its shards of the live
/// model and window for the boards (see [`super::live`]).
///
/// The title stage holds every title's views in the window, so it also
/// gives the window counts: each worker's [`HourTable`] of every hour with
/// views (the second stream), and the live window. A job
/// with the model does not count views a second time.
///
/// Titles and their catalog info are both keyed by title, so the windows
/// and the join that moves measures up the hierarchy run inside the title
/// shard, in time order: a fact updates its title and is forwarded to the
/// title's current ancestors, and so is each of its parts when it leaves
/// its window; a catalog change moves the title's current measures from the
/// old ancestors to the new ones. This is the incremental join, specialised
/// to one side (the catalog) being small and co-partitioned.
///
/// # Examples
///
/// Channel 1 holds show 2, which holds episode 3; one view of the episode in
/// pane 5 (hour 0) rolls up to the show and the channel.
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use differential_dataflow::input::Input;
/// use popularity::core::catalog::Kind;
/// use popularity::core::model::{ModelConfig, Obs};
/// use popularity::core::time::WindowSpec;
/// use popularity::dataflow::live::Publish;
/// use popularity::dataflow::model::model_tables;
/// use timely::dataflow::operators::Inspect;
///
/// let hours = Arc::new(Mutex::new(Vec::new()));
/// let sink = hours.clone();
/// timely::execute_directly(move |worker| {
///     let window = WindowSpec::hourly();
///     let spec = ModelConfig::default()
///         .spec(window.slide_ms, window.panes())
///         .expect("valid");
///     let (mut facts, mut catalog) = worker.dataflow::<u64, _, _>(|scope| {
///         let (facts_in, facts) = scope.new_collection();
///         let (_, carried) = scope.new_collection();
///         let (catalog_in, catalog) = scope.new_collection();
///         let (model, _views, _live) =
///             model_tables(facts, carried, catalog, window, spec, Arc::default(), Publish::Off);
///         model.inspect(move |hour| sink.lock().expect("not poisoned").push(hour.clone()));
///         (facts_in, catalog_in)
///     });
///     catalog.update((1, (Kind::Channel, None, None)), 1);
///     catalog.update((2, (Kind::Show, Some(1), None)), 1);
///     catalog.update((3, (Kind::Episode, Some(2), None)), 1);
///     catalog.advance_to(5);
///     facts.advance_to(5);
///     facts.update((3, 0), Obs { views: 1, watch_ms: 60_000 });
/// });
/// let hours = hours.lock().expect("not poisoned");
/// let mut views: Vec<(u64, i64)> = (hours.iter().filter(|h| h.hour == 0))
///     .flat_map(|h| h.rows.iter().map(|r| (r.id, r.m.views)))
///     .collect();
/// views.sort();
/// assert_eq!(views, [(1, 1), (2, 1), (3, 1)]);
/// ```
pub fn model_tables<'scope>(
    facts: Facts<'scope>,
    carried: Windowed<'scope>,
    catalog: CatalogUpdates<'scope>,
    window: WindowSpec,
    spec: ModelSpec,
    stats: Arc<Stats>,
    live: Publish,
) -> (
    StreamVec<'scope, Pane, ModelHour>,
    StreamVec<'scope, Pane, HourTable>,
    StreamVec<'scope, Pane, LiveUpdate>,
) {
    let scope = facts.inner.scope();
    let resolved = catalog_info(catalog);
    let info = resolved
        .clone()
        .inner
        .exchange(|((id, _), _, _)| shard(*id))
        .map(|((id, info), t, r)| (Side::Info(id, info), t, r));
    // Restored windows and late facts from before a restore come through the
    // carry input, which stays at the restore's time for a while.
    let carried = match live {
        Publish::Provisional => flushed(carried.inner),
        _ => carried.inner,
    };
    let carried = carried
        .exchange(|(id, _, _)| shard(*id))
        .map(|(id, t, m)| (Side::Windowed(id, m), t, 1));
    let stage = |titles| StageSpec {
        titles,
        window,
        spec,
        live,
    };
    let facts = match live {
        Publish::Provisional => flushed(facts.inner),
        _ => facts.inner,
    };
    let titles = shard_stage(
        facts,
        info.clone().concat(carried),
        stage(true),
        stats.clone(),
    );
    // Deltas, hours, window counts and live shards each their own way:
    // moved, not copied.
    let mut split = titles.partition(4, |out| match out {
        StageOut::Delta(..) => (0, out),
        StageOut::Hour(..) => (1, out),
        StageOut::Views(..) => (2, out),
        StageOut::Live(..) => (3, out),
    });
    let (Some(title_live), Some(views), Some(title_hours), Some(deltas)) =
        (split.pop(), split.pop(), split.pop(), split.pop())
    else {
        unreachable!("partition gives as many streams as asked for")
    };
    let deltas = deltas.flat_map(|out| match out {
        StageOut::Delta(id, t, m) => Some((id, t, m)),
        _ => None,
    });
    let deltas = match spec.rollup {
        Rollup::Routes => deltas,
        Rollup::Differential => roll_up(deltas, resolved),
    };
    let views = views.flat_map(|out| match out {
        StageOut::Views(table) => Some(table),
        _ => None,
    });
    let total = deltas
        .clone()
        .filter(|(a, _, _)| *a == TOTAL_NODE)
        .map(|(_, t, m)| (Side::Total(m.views_24h), t, 1i64))
        .broadcast();
    let to_nodes = deltas
        .filter(|(a, _, _)| *a != TOTAL_NODE)
        .exchange(|(a, _, _)| shard(*a))
        .map(|(a, t, m)| (Side::Windowed(a, m), t, 1));
    // The node stage holds shows and channels only: the info of every
    // other title would cost it a slot per title and never a row.
    let node_info = info.filter(|(side, _, _)| {
        matches!(side, Side::Info(_, i) if matches!(i.kind, Kind::Show | Kind::Channel))
    });
    let nodes = shard_stage(
        timely::dataflow::operators::generic::operator::empty(scope),
        node_info.concat(total).concat(to_nodes),
        stage(false),
        stats,
    );
    let out = title_hours.concat(nodes);
    let mut split = out.partition(2, |out| match out {
        StageOut::Live(..) => (1, out),
        _ => (0, out),
    });
    let (Some(node_live), Some(hours)) = (split.pop(), split.pop()) else {
        unreachable!("partition gives as many streams as asked for")
    };
    let hours = hours.flat_map(|out| match out {
        StageOut::Hour(h) => Some(h),
        _ => None,
    });
    let live = title_live.concat(node_live).flat_map(|out| match out {
        StageOut::Live(l) => Some(l),
        _ => None,
    });
    (finish_hours(hours, window, spec), views, live)
}

/// Rolls titles' own changes up to their ancestors as differential does it:
/// a `join` with each title's targets, arranged, which also moves a title's
/// accumulated measures when its info changes. Changes are consolidated per
/// target within each batch, as the routes' outbox sums them.
fn roll_up<'scope>(
    own: StreamVec<'scope, Pane, (ContentId, Pane, Measures)>,
    resolved: VecCollection<'scope, Pane, (ContentId, Info), i64>,
) -> StreamVec<'scope, Pane, (ContentId, Pane, Measures)> {
    let own = own.map(|(id, t, m)| ((id, ()), t, m)).as_collection();
    let targets = resolved.flat_map(|(id, info)| {
        let itself = forwards_itself(Some(&info)).then_some((id, true));
        let up: Vec<_> = targets(Some(&info)).chain(itself).collect();
        up.into_iter().map(move |to| (id, to))
    });
    own.join_map(targets, |_, &(), &to| to)
        .inner
        .map(
            |((to, with_24h), t, mut m): ((ContentId, bool), Pane, Measures)| {
                if !with_24h {
                    m.views_24h = 0;
                }
                (to, t, m)
            },
        )
        .as_collection()
        .consolidate_stream()
        .inner
}

/// What a shard stage emits: its rows of an hour, or (titles) a measure
/// delta for an ancestor at a time, or the window counts of an hour.
#[derive(Clone, Debug)]
enum StageOut {
    Hour(ModelHour),
    Delta(ContentId, Pane, Measures),
    Views(HourTable),
    Live(LiveUpdate),
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
                    let Some(mut parts) = pending.remove(&end) else {
                        break;
                    };
                    let total = parts.iter().map(|h| h.total_24h).max().unwrap_or(0);
                    let worker = parts.first().map_or(0, |h| h.worker);
                    // The others onto the largest part (the titles): no copy of it.
                    parts.sort_by_key(|h| std::cmp::Reverse(h.rows.len()));
                    let mut parts = parts.into_iter();
                    let mut rows: Vec<NodeRow> = parts.next().map(|h| h.rows).unwrap_or_default();
                    for mut h in parts {
                        rows.append(&mut h.rows);
                        give_back(h.rows);
                    }
                    for r in rows.iter_mut() {
                        if r.kind == Some(crate::core::catalog::Kind::Episode) {
                            r.score_ppm = crate::core::model::score_ppm(r.m.views_24h, total);
                        }
                    }
                    if rows.is_empty() {
                        continue;
                    }
                    let (_, picked) = rank_picked(&rows, spec.top_k);
                    let candidates = picked.into_iter().map(|i| rows[i].clone()).collect();
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

#[cfg(test)]
mod tests;
