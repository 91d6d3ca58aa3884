//! The model in the dataflow: windows over all measures, the catalog as a
//! collection, rollups along the hierarchy, and per-shard tables.
//!
//! ```text
//! facts ((title, cell), +obs@pane) ──────────── exchange by title ──┐
//! catalog ─► ⋈ parent ─► info ───────────────── exchange by title ──┤
//!                                                                   ▼
//! ModelTitles: +obs@p, −obs@p+W, −views@p+S as the frontier reaches them;
//!              title measures; changes forwarded along each title's route ─┐
//!                                   deltas by node and pane (exchange),    │
//!                                   Σ episodes (broadcast)                 ▼
//! ModelNodes: shows, channels ◄────────────────────────────────────────────┘
//! ModelTitles + ModelNodes ─► FinishHours (episode scores, ranking candidates) ─► ModelHour
//! ```
//!
//! The catalog is a collection like any other: a title that moves to another
//! show retracts its old info and asserts the new one, and the title shard
//! moves its current measures from the old show to the new one at that time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Filter, Map, Partition};
use timely::dataflow::operators::{Concat, Exchange as _};
use timely::dataflow::StreamVec;

use super::live::LiveBoard;
use super::{follow_frontier, shard, HourTable};
use crate::core::event::ContentId;
use crate::core::model::{
    rank_all, resolve, CatalogEntry, Cell, Delta, Info, Measures, ModelSpec, NodeRow, Obs,
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

/// The model as of the latest pane each worker has completed, for the API.
#[derive(Debug, Default)]
pub struct ModelBoard {
    shards: Mutex<BTreeMap<usize, ModelShard>>,
    version: AtomicU64,
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
            self.version.fetch_add(1, Ordering::Release);
        }
    }
    /// Bumped by every publish.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
    /// Every shard published so far.
    pub fn shards(&self) -> BTreeMap<usize, ModelShard> {
        self.shards.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Updates of one time waiting for the frontier: measures, and side updates.
type Pending = (Vec<(ContentId, Cell, Obs)>, Vec<(Side, i64)>);

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

/// Builds the model from per-title facts, measures carried over a restore
/// (already windowed) and the catalog; emits each worker's [`ModelHour`] at
/// the last pane of every hour and publishes the live model to `live`.
///
/// The title stage holds every title's views in the window, so it also
/// gives the window counts: each worker's [`HourTable`] of every hour with
/// views (the second stream), and the live window on `live_window`. A job
/// with the model does not count views a second time.
///
/// Titles and their catalog info are both keyed by title, so the windows
/// and the join that moves measures up the hierarchy run inside the title
/// shard, in time order: a fact updates its title and is forwarded to the
/// title's current ancestors, and so is each of its parts when it leaves
/// its window; a catalog change moves the title's current measures from the
/// old ancestors to the new ones. This is the incremental join, specialised
/// to one side (the catalog) being small and co-partitioned.
pub fn model_tables<'scope>(
    facts: Facts<'scope>,
    carried: Windowed<'scope>,
    catalog: CatalogUpdates<'scope>,
    window: WindowSpec,
    spec: ModelSpec,
    stats: Arc<Stats>,
    (live, live_window): (Option<Arc<ModelBoard>>, Option<Arc<LiveBoard>>),
) -> (
    StreamVec<'scope, Pane, ModelHour>,
    StreamVec<'scope, Pane, HourTable>,
) {
    let scope = facts.inner.scope();
    let info = catalog_info(catalog)
        .inner
        .exchange(|((id, _), _, _)| shard(*id))
        .map(|((id, info), t, r)| (Side::Info(id, info), t, r));
    let carried = carried
        .inner
        .exchange(|(id, _, _)| shard(*id))
        .map(|(id, t, m)| (Side::Windowed(id, m), t, 1));
    let titles = shard_stage(
        facts.inner,
        info.clone().concat(carried),
        true,
        window,
        spec,
        stats.clone(),
        (live.clone(), live_window),
    );
    // Deltas, hours and window counts each their own way: moved, not copied.
    let mut split = titles.partition(3, |out| match out {
        StageOut::Delta(..) => (0, out),
        StageOut::Hour(..) => (1, out),
        StageOut::Views(..) => (2, out),
    });
    let (Some(views), Some(title_hours), Some(deltas)) = (split.pop(), split.pop(), split.pop())
    else {
        unreachable!("partition gives as many streams as asked for")
    };
    let deltas = deltas.flat_map(|out| match out {
        StageOut::Delta(id, t, m) => Some((id, t, m)),
        _ => None,
    });
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
    let nodes = shard_stage(
        timely::dataflow::operators::generic::operator::empty(scope),
        info.concat(total).concat(to_nodes),
        false,
        window,
        spec,
        stats,
        (live, None),
    );
    let hours = title_hours.concat(nodes).flat_map(|out| match out {
        StageOut::Hour(h) => Some(h),
        _ => None,
    });
    (finish_hours(hours, window, spec), views)
}

/// What a shard stage emits: its rows of an hour, or (titles) a measure
/// delta for an ancestor at a time, or the window counts of an hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum StageOut {
    Hour(ModelHour),
    Delta(ContentId, Pane, Measures),
    Views(HourTable),
}

/// Where a title's measures go: shows and channels to their own node (they
/// are rows of the node stage), everything else to its ancestors, episodes'
/// score-window views also to the episode total. At most three targets, so
/// no allocation per fact.
fn targets(info: Option<&Info>) -> impl Iterator<Item = (ContentId, bool)> {
    use crate::core::catalog::Kind;
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
    use crate::core::catalog::Kind;
    matches!(info.map(|i| i.kind), Some(Kind::Show | Kind::Channel))
}

/// Where a title's changes go, resolved when its catalog info changes: up
/// to two nodes (by their place in the outbox, and whether `views_24h` goes
/// too) and, for episodes, the episode total. A show or channel goes to
/// itself, a row of the node stage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Route {
    to: [Option<(u32, bool)>; 2],
    episode: bool,
}

/// One node of a shard: its current measures, where its changes go, and how
/// many updates waiting to leave a window refer to it.
#[derive(Clone, Debug)]
struct Slot {
    id: ContentId,
    m: Measures,
    route: Route,
    waiting: u32,
}

/// A shard's nodes in a dense vector, found by id through an index: the
/// windows refer to slots by position, so an update leaving its window
/// costs no lookup, and the hourly rows are a scan, not a hash walk.
#[derive(Default)]
struct Slots {
    index: HashMap<ContentId, u32, Fx>,
    slots: Vec<Slot>,
    /// Catalog info by slot, apart from the slots: read by the hourly rows only.
    infos: Vec<Option<Info>>,
    free: Vec<u32>,
    /// Slot positions in id order, rebuilt when slots come or go.
    order: Vec<u32>,
    ordered: bool,
    /// Slots with nonzero measures.
    nonzero: usize,
}

impl Slots {
    /// The slot of `id`, made if it has none.
    fn slot(&mut self, id: ContentId) -> u32 {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        let slot = Slot {
            id,
            m: Measures::default(),
            route: Route::default(),
            waiting: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                self.infos[i as usize] = None;
                i
            }
            None => {
                self.slots.push(slot);
                self.infos.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id, i);
        self.ordered = false;
        i
    }

    /// Applies `d` to slot `i`'s measures.
    fn add(&mut self, i: u32, d: &Delta) {
        let s = &mut self.slots[i as usize];
        let was = s.m.is_zero();
        d.apply(&mut s.m, true);
        match (was, s.m.is_zero()) {
            (true, false) => self.nonzero += 1,
            (false, true) => self.nonzero -= 1,
            _ => {}
        }
    }

    /// Frees slot `i` if nothing is left of it.
    fn release(&mut self, i: u32) {
        let s = &self.slots[i as usize];
        if s.waiting == 0 && self.infos[i as usize].is_none() && s.m.is_zero() {
            self.index.remove(&s.id);
            self.free.push(i);
            self.ordered = false;
        }
    }

    /// Sorts the slot positions by id, if slots came or went.
    fn order(&mut self) {
        if !self.ordered {
            let slots = &self.slots;
            self.order = self.index.values().copied().collect();
            self.order.sort_unstable_by_key(|&i| slots[i as usize].id);
            self.ordered = true;
        }
    }

    /// `(id, views in the window)` of every node with views, in id order.
    fn views(&mut self) -> Vec<(ContentId, i64)> {
        self.order();
        self.order
            .iter()
            .map(|&i| &self.slots[i as usize])
            .filter(|s| s.m.views != 0)
            .map(|s| (s.id, s.m.views))
            .collect()
    }

    /// Rows of the nodes with nonzero measures (titles: but shows and
    /// channels, which the node stage shows), in id order.
    fn rows(
        &mut self,
        titles: bool,
        total: i64,
        t: crate::core::time::Millis,
        spec: &ModelSpec,
    ) -> Vec<NodeRow> {
        self.order();
        let mut rows = Vec::with_capacity(self.nonzero);
        for &i in &self.order {
            let (s, info) = (&self.slots[i as usize], self.infos[i as usize]);
            if s.m.is_zero() || (titles && forwards_itself(info.as_ref())) {
                continue;
            }
            rows.push(NodeRow::new(s.id, info, s.m, total, t, spec.half_life_ms));
        }
        rows
    }
}

/// Sums the deltas a title shard sends to each node at one time, in a dense
/// vector: a title's route names its nodes' places, so forwarding a change
/// costs no lookup.
#[derive(Default)]
struct Outbox {
    index: HashMap<ContentId, u32, Fx>,
    ids: Vec<ContentId>,
    sums: Vec<Measures>,
    marked: Vec<bool>,
    touched: Vec<u32>,
    episode_total: i64,
}

impl Outbox {
    /// The place of node `id`.
    fn place(&mut self, id: ContentId) -> u32 {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        self.ids.push(id);
        self.sums.push(Measures::default());
        self.marked.push(false);
        let i = (self.ids.len() - 1) as u32;
        self.index.insert(id, i);
        i
    }

    /// The route of title `id` with catalog info `info`.
    fn route(&mut self, id: ContentId, info: Option<&Info>) -> Route {
        let mut route = Route::default();
        let mut n = 0;
        for (a, with_24h) in targets(info) {
            if a == TOTAL_NODE {
                route.episode = true;
            } else if n < route.to.len() {
                route.to[n] = Some((self.place(a), with_24h));
                n += 1;
            }
        }
        if forwards_itself(info) {
            route.to[0] = Some((self.place(id), true));
        }
        route
    }

    /// Sends `d` along `route`.
    fn forward(&mut self, route: &Route, d: &Delta) {
        for &(i, with_24h) in route.to.iter().flatten() {
            let i = i as usize;
            if !self.marked[i] {
                self.marked[i] = true;
                self.touched.push(i as u32);
            }
            d.apply(&mut self.sums[i], with_24h);
        }
        if route.episode {
            self.episode_total += d.views_24h();
        }
    }

    /// Hands each node's nonzero sum to `give` and clears the sums.
    fn drain(&mut self, mut give: impl FnMut(ContentId, Measures)) {
        for i in self.touched.drain(..) {
            let i = i as usize;
            self.marked[i] = false;
            let m = std::mem::take(&mut self.sums[i]);
            if !m.is_zero() {
                give(self.ids[i], m);
            }
        }
    }
}

/// One shard of titles (`titles = true`) or of shows and channels: applies
/// its updates in time order as the frontier allows and emits its rows at
/// the last pane of every hour. The title stage also keeps the windows (a
/// fact leaves the window one window after its pane, its 24-hour views one
/// score window after) and forwards every change of a title to its
/// ancestors, summed per ancestor and time.
///
/// What is still to leave a window is held here and applied only once the
/// frontier reaches its time. Handing it on at once, stamped with a future
/// time, would park a day of updates in every operator downstream.
#[allow(clippy::too_many_arguments)]
fn shard_stage<'scope>(
    facts: StreamVec<'scope, Pane, ((ContentId, Cell), Pane, Obs)>,
    side: StreamVec<'scope, Pane, (Side, Pane, i64)>,
    titles: bool,
    window: WindowSpec,
    spec: ModelSpec,
    stats: Arc<Stats>,
    (live, live_window): (Option<Arc<ModelBoard>>, Option<Arc<LiveBoard>>),
) -> StreamVec<'scope, Pane, StageOut> {
    let scope = side.scope();
    let worker = scope.index();
    let publish_every = std::time::Duration::from_secs(1);
    let board_key = worker * 2 + usize::from(!titles);
    let (width, score) = (window.panes(), spec.score_panes);
    facts.binary_frontier::<_, CapacityContainerBuilder<Vec<StageOut>>, _, _, _, _>(
        side,
        Exchange::new(|u: &((ContentId, Cell), Pane, Obs)| shard((u.0).0)),
        Pipeline,
        if titles { "ModelTitles" } else { "ModelNodes" },
        move |initial, op| {
            let activator = scope.activator_for(op.address.clone());
            let mut held = Some(initial);
            let mut pending: BTreeMap<Pane, Pending> = BTreeMap::new();
            let mut nodes = Slots::default();
            // What leaves the window (views and watch time by cell, negated)
            // and what leaves the score window (views only), by pane: 24 and
            // 16 bytes per title, cell and pane.
            let mut leaving: BTreeMap<Pane, Vec<(u32, Cell, Obs)>> = BTreeMap::new();
            let mut leaving_24h: BTreeMap<Pane, Vec<(u32, i64)>> = BTreeMap::new();
            // A title's info is its slot's, counted once; titles whose info is
            // counted otherwise (a value twice, or two values) keep their counts here.
            let mut unsettled: HashMap<ContentId, Vec<(Info, i64)>, Fx> = HashMap::default();
            let mut counted: Vec<(Info, i64)> = Vec::new();
            let mut outbox = Outbox::default();
            let mut total: i64 = 0;
            let mut cursor: Pane = 0;
            let mut last_publish = std::time::Instant::now() - publish_every;
            let mut dirty = false;
            let mut published_bound: Option<Pane> = None;
            let mut state: i64 = 0;
            move |(input1, frontier1), (input2, frontier2), output| {
                input1.for_each(|_cap, data| {
                    for ((id, cell), t, obs) in data.drain(..) {
                        pending.entry(t).or_default().0.push((id, cell, obs));
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
                    let next = [
                        pending.first_key_value().map(|(t, _)| *t),
                        leaving.first_key_value().map(|(t, _)| *t),
                        leaving_24h.first_key_value().map(|(t, _)| *t),
                    ]
                    .into_iter()
                    .flatten()
                    .min()
                    .filter(|t| bound.is_none_or(|b| *t < b));
                    if let (Some(upto), Some(cap)) = (next.or(bound), held.as_ref()) {
                        while nodes.nonzero > 0 || total != 0 {
                            let end = window.last_pane_of_hour(window.hour_of(cursor));
                            if end >= upto {
                                break;
                            }
                            let t = window.window_bounds(end).1;
                            let rows = nodes.rows(titles, total, t, &spec);
                            output
                                .session(&cap.delayed(&end))
                                .give(StageOut::Hour(ModelHour {
                                    hour: window.hour_of(end),
                                    worker,
                                    rows,
                                    candidates: Vec::new(),
                                    total_24h: total,
                                }));
                            if titles {
                                let rows = nodes.views();
                                if !rows.is_empty() {
                                    output.session(&cap.delayed(&end)).give(StageOut::Views(
                                        HourTable {
                                            hour: window.hour_of(end),
                                            worker,
                                            rows,
                                        },
                                    ));
                                }
                            }
                            cursor = end + 1;
                        }
                    }
                    if next.is_none()
                        && (dirty || bound.is_some_and(|b| Some(b) != published_bound))
                    {
                        let publishing = live.is_some() || live_window.is_some();
                        if let Some(b) = bound.filter(|_| publishing) {
                            let since = last_publish.elapsed();
                            if since >= publish_every {
                                let as_of = b.saturating_sub(1);
                                let t = window.window_bounds(as_of).1;
                                published_bound = Some(b);
                                if let Some(board) = live.as_ref() {
                                    board.publish(
                                        board_key,
                                        ModelShard {
                                            as_of,
                                            rows: Arc::new(nodes.rows(titles, total, t, &spec)),
                                            total_24h: total,
                                        },
                                    );
                                }
                                if let Some(board) = live_window.as_ref() {
                                    let counts = nodes.views().into_iter().collect();
                                    board.publish(worker, as_of, Arc::new(counts));
                                }
                                last_publish = std::time::Instant::now();
                                dirty = false;
                            } else {
                                activator.activate_after(publish_every - since);
                            }
                        }
                    }
                    let Some(time) = next else { break };
                    let Some(cap) = held.as_ref() else { break };
                    let (facts, sides) = pending.remove(&time).unwrap_or_default();
                    // Catalog changes first, with the measures as of before this time.
                    let mut changes = Vec::new();
                    for (side, r) in sides {
                        match side {
                            Side::Total(v) => total += v * r,
                            Side::Info(id, info) => changes.push((id, info, r)),
                            Side::Windowed(id, m) => {
                                let d = Delta::Whole(m);
                                let i = nodes.slot(id);
                                if titles {
                                    outbox.forward(&nodes.slots[i as usize].route, &d);
                                }
                                nodes.add(i, &d);
                                nodes.release(i);
                            }
                        }
                    }
                    // Retractions and assertions of one time come in any order:
                    // count each value; the current one is the one left positive.
                    changes.sort_unstable_by_key(|c| c.0);
                    for group in changes.chunk_by(|a, b| a.0 == b.0) {
                        let id = group[0].0;
                        let i = nodes.slot(id);
                        counted.clear();
                        match unsettled.remove(&id) {
                            Some(list) => counted.extend(list),
                            None => counted.extend(nodes.infos[i as usize].map(|info| (info, 1))),
                        }
                        for &(_, info, r) in group {
                            match counted.iter_mut().find(|(x, _)| *x == info) {
                                Some(e) => e.1 += r,
                                None => counted.push((info, r)),
                            }
                        }
                        counted.retain(|(_, n)| *n != 0);
                        let now = counted.iter().find(|(_, n)| *n > 0).map(|(x, _)| *x);
                        if !(counted.is_empty() || counted[..] == [(counted[0].0, 1)]) {
                            unsettled.insert(id, counted.clone());
                        }
                        let before = std::mem::replace(&mut nodes.infos[i as usize], now);
                        if titles && before != now {
                            let route = outbox.route(id, now.as_ref());
                            let slot = &mut nodes.slots[i as usize];
                            let old = std::mem::replace(&mut slot.route, route);
                            if !slot.m.is_zero() {
                                let m = slot.m;
                                let mut gone = m;
                                differential_dataflow::difference::Abelian::negate(&mut gone);
                                outbox.forward(&old, &Delta::Whole(gone));
                                outbox.forward(&route, &Delta::Whole(m));
                            }
                        }
                        nodes.release(i);
                    }
                    // What leaves the windows at this time.
                    // Both were pushed in slot order (below), so the slots are
                    // visited in memory order, not at random.
                    for (i, cell, obs) in leaving.remove(&time).unwrap_or_default() {
                        let d = Delta::Cell {
                            cell,
                            obs,
                            score: false,
                        };
                        let s = &mut nodes.slots[i as usize];
                        s.waiting -= 1;
                        outbox.forward(&s.route, &d);
                        nodes.add(i, &d);
                        nodes.release(i);
                    }
                    for (i, v) in leaving_24h.remove(&time).unwrap_or_default() {
                        let d = Delta::Score(v);
                        let s = &mut nodes.slots[i as usize];
                        s.waiting -= 1;
                        outbox.forward(&s.route, &d);
                        nodes.add(i, &d);
                        nodes.release(i);
                    }
                    // What enters: it leaves the window one window later, and
                    // its views leave the score window one score window later.
                    let mut facts: Vec<(u32, Cell, Obs)> = facts
                        .into_iter()
                        .map(|(id, cell, obs)| (nodes.slot(id), cell, obs))
                        .collect();
                    // In slot order, one update per slot and cell.
                    facts.sort_unstable_by_key(|e| (e.0, e.1));
                    facts.dedup_by(|next, kept| {
                        let same = next.0 == kept.0 && next.1 == kept.1;
                        if same {
                            kept.2 += next.2;
                        }
                        same
                    });
                    for (i, cell, obs) in facts {
                        let mut gone = obs;
                        differential_dataflow::difference::Abelian::negate(&mut gone);
                        leaving
                            .entry(time + width)
                            .or_default()
                            .push((i, cell, gone));
                        nodes.slots[i as usize].waiting += 1;
                        if obs.views != 0 {
                            leaving_24h
                                .entry(time + score)
                                .or_default()
                                .push((i, gone.views));
                            nodes.slots[i as usize].waiting += 1;
                        }
                        let d = Delta::Cell {
                            cell,
                            obs,
                            score: true,
                        };
                        outbox.forward(&nodes.slots[i as usize].route, &d);
                        nodes.add(i, &d);
                        nodes.release(i);
                    }
                    if !outbox.touched.is_empty() || outbox.episode_total != 0 {
                        let at = cap.delayed(&time);
                        let mut session = output.session(&at);
                        outbox.drain(|a, m| session.give(StageOut::Delta(a, time, m)));
                        if outbox.episode_total != 0 {
                            let m = Measures {
                                views_24h: std::mem::take(&mut outbox.episode_total),
                                ..Measures::default()
                            };
                            session.give(StageOut::Delta(TOTAL_NODE, time, m));
                        }
                    }
                    cursor = time;
                    dirty = true;
                }
                // Keep a capability for the earliest update still to leave.
                let first_leaving = [
                    leaving.first_key_value().map(|(t, _)| *t),
                    leaving_24h.first_key_value().map(|(t, _)| *t),
                ]
                .into_iter()
                .flatten()
                .min();
                match (bound, first_leaving) {
                    (Some(b), Some(t)) => follow_frontier(&mut held, Some(b.min(t))),
                    (Some(b), None) => follow_frontier(&mut held, Some(b)),
                    (None, Some(t)) => follow_frontier(&mut held, Some(t)),
                    (None, None) => held = None,
                }
                let now = pending
                    .values()
                    .map(|(a, b)| (a.len() + b.len()) as i64)
                    .sum::<i64>()
                    + nodes.nonzero as i64;
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
                    let Some(mut parts) = pending.remove(&end) else {
                        break;
                    };
                    let total = parts.iter().map(|h| h.total_24h).max().unwrap_or(0);
                    let worker = parts.first().map_or(0, |h| h.worker);
                    // The others onto the largest part (the titles): no copy of it.
                    parts.sort_by_key(|h| std::cmp::Reverse(h.rows.len()));
                    let mut parts = parts.into_iter();
                    let mut rows: Vec<NodeRow> = parts.next().map(|h| h.rows).unwrap_or_default();
                    for h in parts {
                        rows.extend(h.rows);
                    }
                    for r in rows.iter_mut() {
                        if r.info.map(|i| i.kind) == Some(crate::core::catalog::Kind::Episode) {
                            r.score_ppm = crate::core::model::score_ppm(r.m.views_24h, total);
                        }
                    }
                    if rows.is_empty() {
                        continue;
                    }
                    let top = rank_all(&rows, spec.top_k);
                    let picked: std::collections::HashSet<ContentId, Fx> =
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
