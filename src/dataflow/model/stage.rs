//! A shard stage of the model: one shard of titles (`titles = true`) or of
//! shows and channels. It applies its updates in time order as the frontier
//! allows (to a block's end) and emits its rows at every hour's last pane. The title stage
//! also keeps the windows (a fact leaves the window one window after its
//! pane, its 24-hour views one score window after the score step it entered
//! in, summed per title and step) and forwards every change
//! of a title to its ancestors, summed per ancestor over a block of panes
//! (see [`super::blocks`]).
//!
//! What is still to leave a window is held here and applied only once the
//! frontier reaches its time. Handing it on at once, stamped with a future
//! time, would park a day of updates in every operator downstream.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;

mod admit;

use super::blocks::Blocks;
use super::early::early;
use super::exits::{fold_exit, split32, Exit};
use super::slots::{Outbox, RowsOf, Slots, AHEAD};
use super::{Fx, ModelHour, Pending, Side, StageOut, TOTAL_NODE};
use crate::core::event::ContentId;
use crate::core::model::{spare_rows, Cell, Delta, Info, Measures, ModelSpec, Obs, Rollup};
use crate::core::stats::Stats;
use crate::core::time::{now_ms, Pane, WindowSpec};
use crate::dataflow::live::{LiveUpdate, ModelShard, Publish, Publisher};
use crate::dataflow::{follow_frontier, shard, HourTable};

/// What a shard stage is for: titles or nodes, its window and model, and
/// whether it sends its shard of the live model (and window) on.
#[derive(Clone)]
pub(super) struct StageSpec {
    /// Titles (keeps the windows, forwards to ancestors) or shows and channels.
    pub titles: bool,
    /// Window geometry.
    pub window: WindowSpec,
    /// The model's settings.
    pub spec: ModelSpec,
    /// Send live shards: the model's rows, and (titles) the window's
    /// counts, with their provisional counts if asked.
    pub live: Publish,
}

/// One shard stage's operator: facts exchanged by title, side updates
/// (catalog info, the episode total, restored windows) in place.
pub(super) fn shard_stage<'scope>(
    facts: StreamVec<'scope, Pane, ((ContentId, Cell), Pane, Obs)>,
    side: StreamVec<'scope, Pane, (Side, Pane, i64)>,
    stage: StageSpec,
    stats: Arc<Stats>,
) -> StreamVec<'scope, Pane, StageOut> {
    let scope = side.scope();
    let worker = scope.index();
    let name = if stage.titles {
        "ModelTitles"
    } else {
        "ModelNodes"
    };
    facts.binary_frontier::<_, CapacityContainerBuilder<Vec<StageOut>>, _, _, _, _>(
        side,
        Exchange::new(|u: &((ContentId, Cell), Pane, Obs)| shard((u.0).0)),
        Pipeline,
        name,
        move |initial, op| {
            let activator = scope.activator_for(op.address.clone());
            let mut held = Some(initial);
            let mut shard = Shard::new(stage, worker, stats.clone());
            move |(input1, frontier1), (input2, frontier2), output| {
                input1.for_each(|_cap, data| shard.take_facts(data.drain(..)));
                input2.for_each(|_cap, data| shard.take_sides(data.drain(..)));
                let bound: Option<Pane> = [frontier1.frontier(), frontier2.frontier()]
                    .into_iter()
                    .filter_map(|f| f.first().copied())
                    .min();
                // Only to a block's end, where every shard has sent its sums.
                let near = shard.blocks.first_near(now_ms());
                let bound = bound.map(|b| shard.through(b, near));
                let mut unsent: Option<Pane> = None;
                loop {
                    let next = shard.next_time(bound);
                    if let (Some(u), Some(cap)) = (unsent, held.as_ref()) {
                        if next.is_none_or(|n| n > shard.blocks.end_of(u, near)) {
                            let at = cap.delayed(&u);
                            let mut session = output.session(&at);
                            shard.send_deltas(u, |out| session.give(out));
                            unsent = None;
                        }
                    }
                    if let (Some(upto), Some(cap)) = (next.or(bound), held.as_ref()) {
                        shard.emit_hours(upto, |end, out| {
                            output.session(&cap.delayed(&end)).give(out)
                        });
                    }
                    if let (None, Some(cap)) = (next, held.as_ref()) {
                        let mut session = output.session(cap);
                        if let Some(wait) = shard.live(bound, |out| session.give(out)) {
                            activator.activate_after(wait);
                        }
                    }
                    let (Some(time), Some(_)) = (next, held.as_ref()) else {
                        break;
                    };
                    shard.step(time);
                    if shard.has_deltas() {
                        unsent = Some(time);
                    }
                }
                // Keep a capability for the earliest update still to leave.
                match [bound, shard.first_leaving()].into_iter().flatten().min() {
                    Some(t) => follow_frontier(&mut held, Some(t)),
                    None => held = None,
                }
                shard.account();
            }
        },
    )
}

/// What the rows of stage `stage` are, with episode total `total`, at
/// window end `t`.
fn rows_of(stage: &StageSpec, total: i64, t: crate::core::time::Millis) -> RowsOf<'_> {
    let (titles, spec) = (stage.titles, &stage.spec);
    RowsOf {
        titles,
        total,
        t,
        spec,
    }
}

/// A shard stage's state between activations.
struct Shard {
    stage: StageSpec,
    worker: usize,
    /// Updates by time, waiting for the frontier.
    pending: BTreeMap<Pane, Pending>,
    nodes: Slots,
    /// What leaves the window (views and watch time by cell, negated: 16
    /// bytes per title, cell and pane) and what leaves the score window
    /// (views, negated: 8 bytes per title and pane), by pane.
    leaving: BTreeMap<Pane, Vec<Exit>>,
    leaving_24h: BTreeMap<Pane, Vec<(u32, i32)>>,
    /// A title's info is its slot's, counted once; titles whose info is
    /// counted otherwise (a value twice, or two values) keep their counts here.
    unsettled: HashMap<ContentId, Vec<(Info, i64)>, Fx>,
    counted: Vec<(Info, i64)>,
    outbox: Outbox,
    /// The episode total (node stage): views over the score window of every episode.
    total: i64,
    /// The next pane whose hour may still have to be emitted.
    cursor: Pane,
    /// When the live shard is due, and the final counts last sent.
    publisher: Publisher,
    /// The state size last reported to the counters.
    state: i64,
    /// Titles outside the catalog last reported to the counters.
    uncataloged: i64,
    /// Facts this shard sent to the overflow title.
    overflowed: u64,
    /// The exit pane of the score step the stage is in: its exits are
    /// still coming.
    open_score_exit: Option<Pane>,
    /// Where its blocks end, and how far it has gone.
    blocks: Blocks,
    through: Pane,
    stats: Arc<Stats>,
}

impl Shard {
    /// An empty shard of worker `worker`.
    fn new(stage: StageSpec, worker: usize, stats: Arc<Stats>) -> Shard {
        Shard {
            blocks: Blocks::new(stage.window, &stage.spec, stage.titles),
            stage,
            worker,
            pending: BTreeMap::new(),
            nodes: Slots::default(),
            leaving: BTreeMap::new(),
            leaving_24h: BTreeMap::new(),
            unsettled: HashMap::default(),
            counted: Vec::new(),
            outbox: Outbox::default(),
            total: 0,
            cursor: 0,
            publisher: Publisher::default(),
            state: 0,
            uncataloged: 0,
            overflowed: 0,
            open_score_exit: None,
            through: 0,
            stats,
        }
    }

    /// How far the stage may go: to the last block end before `bound`.
    fn through(&mut self, bound: Pane, near: Pane) -> Pane {
        self.through = self.through.max(self.blocks.floor(bound, near));
        self.through
    }

    /// Queues facts by their time until the frontier passes it.
    fn take_facts(&mut self, data: impl Iterator<Item = ((ContentId, Cell), Pane, Obs)>) {
        // What is received changes the provisional counts.
        if self.stage.live == Publish::Provisional {
            self.publisher.pacer.arrived();
        }
        for ((id, cell), t, obs) in data {
            self.pending.entry(t).or_default().0.push((id, cell, obs));
        }
    }

    /// Queues side updates (catalog info, totals, restored windows) by time.
    fn take_sides(&mut self, data: impl Iterator<Item = (Side, Pane, i64)>) {
        for (s, t, r) in data {
            self.pending.entry(t).or_default().1.push((s, r));
        }
    }

    /// The earliest time with work (updates, or something leaving a window)
    /// that the frontier has passed.
    fn next_time(&self, bound: Option<Pane>) -> Option<Pane> {
        [
            self.pending.first_key_value().map(|(t, _)| *t),
            self.leaving.first_key_value().map(|(t, _)| *t),
            self.leaving_24h.first_key_value().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
        .filter(|t| bound.is_none_or(|b| *t < b))
    }

    /// The earliest time something is still to leave a window.
    fn first_leaving(&self) -> Option<Pane> {
        [
            self.leaving.first_key_value().map(|(t, _)| *t),
            self.leaving_24h.first_key_value().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Emits the rows (and, titles, the window counts) of every hour that
    /// ends before `upto`, each at the hour's last pane.
    fn emit_hours(&mut self, upto: Pane, mut give: impl FnMut(Pane, StageOut)) {
        let (window, worker) = (self.stage.window, self.worker);
        while self.nodes.nonzero > 0 || self.total != 0 {
            let end = window.last_pane_of_hour(window.hour_of(self.cursor));
            if end >= upto {
                break;
            }
            let hour = window.hour_of(end);
            let t = window.window_bounds(end).1;
            // The hour's rows are written, then handed back (`give_back`).
            let buf = spare_rows(self.nodes.nonzero);
            let titles = self.stage.titles;
            let mut views = Vec::new();
            let of = rows_of(&self.stage, self.total, t);
            let rows = (self.nodes).rows(buf, titles.then_some(&mut views), of);
            let total_24h = self.total;
            let candidates = Vec::new();
            let row = ModelHour {
                hour,
                worker,
                rows,
                candidates,
                total_24h,
            };
            give(end, StageOut::Hour(row));
            if titles && !views.is_empty() {
                let rows = views;
                give(end, StageOut::Views(HourTable { hour, worker, rows }));
            }
            self.cursor = end + 1;
        }
    }

    /// Sends the live shards when due (see [`Pacer`]); the wait until the
    /// next one is allowed, if one is due and not yet allowed.
    fn live(&mut self, bound: Option<Pane>, mut give: impl FnMut(StageOut)) -> Option<Duration> {
        if !self.stage.live.on() {
            return None;
        }
        let due = match self.publisher.due(bound) {
            Ok(due) => due,
            Err(wait) => return wait,
        };
        // Unchanged final rows stay on the board: only provisional counts moved.
        if due.finals {
            let t = self.stage.window.window_bounds(due.as_of).1;
            let of = rows_of(&self.stage, self.total, t);
            let rows = (self.nodes).rows(Vec::new(), None, of);
            let shard = ModelShard {
                as_of: due.as_of,
                rows: Arc::new(rows),
                total_24h: self.total,
            };
            let slot = self.worker * 2 + usize::from(!self.stage.titles);
            give(StageOut::Live(LiveUpdate::Model { slot, shard }));
        }
        if self.stage.titles {
            let early = (self.stage.live == Publish::Provisional).then(|| {
                let taken = self.stats.taken_pane.load(Ordering::Relaxed);
                let at = (self.stage.window.panes(), due.as_of, taken);
                early(&self.pending, &self.leaving, &self.nodes.ids, at)
            });
            let nodes = &mut self.nodes;
            let shard = self
                .publisher
                .shard(due, || nodes.views().into_iter().collect(), early);
            let worker = self.worker;
            give(StageOut::Live(LiveUpdate::Window { worker, shard }));
        }
        None
    }

    /// Whether this title stage sends each title's own changes, for the
    /// rollup downstream ([`Rollup::Differential`]), not its ancestors'.
    fn sends_own(&self) -> bool {
        self.stage.titles && self.stage.spec.rollup == Rollup::Differential
    }

    /// The slot of `id`, made if it has none; a title sending its own
    /// changes is routed to itself from the start, whatever its info.
    fn slot(&mut self, id: ContentId) -> u32 {
        let i = self.nodes.slot(id);
        if self.sends_own() {
            let route = &mut self.nodes.slots[i as usize].route;
            if !route.is_routed() {
                *route = self.outbox.own(id);
            }
        }
        i
    }

    /// Applies everything of time `time`: side updates and catalog changes
    /// (with the measures as of before it), what leaves the windows, what enters.
    fn step(&mut self, time: Pane) {
        let (facts, sides) = self.pending.remove(&time).unwrap_or_default();
        let changes = self.apply_sides(sides);
        self.apply_catalog(changes);
        self.leave(time);
        self.enter(time, facts);
        self.cursor = time;
        self.publisher.pacer.changed();
    }

    /// Applies the episode total and restored windows; returns the catalog changes.
    fn apply_sides(&mut self, sides: Vec<(Side, i64)>) -> Vec<(ContentId, Info, i64)> {
        let mut changes = Vec::new();
        for (side, r) in sides {
            match side {
                Side::Total(v) => self.total += v * r,
                Side::Info(id, info) => changes.push((id, info, r)),
                Side::Windowed(id, m) => {
                    let d = Delta::Whole(m);
                    let i = self.slot(id);
                    if self.stage.titles {
                        let route = self.nodes.slots[i as usize].route;
                        self.outbox.forward(&route, &d);
                    }
                    self.nodes.add(i, &d);
                    self.nodes.release(i);
                }
            }
        }
        changes
    }

    /// Applies catalog changes. Retractions and assertions of one time come
    /// in any order: count each value; the current one is the one left positive.
    fn apply_catalog(&mut self, mut changes: Vec<(ContentId, Info, i64)>) {
        changes.sort_unstable_by_key(|c| c.0);
        for group in changes.chunk_by(|a, b| a.0 == b.0) {
            let id = group[0].0;
            let i = self.slot(id);
            let counted = &mut self.counted;
            counted.clear();
            match self.unsettled.remove(&id) {
                Some(list) => counted.extend(list),
                None => counted.extend(self.nodes.info(i).map(|info| (info, 1))),
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
                self.unsettled.insert(id, counted.clone());
            }
            let before = self.nodes.set_info(i, now);
            if self.stage.titles && before != now && !self.sends_own() {
                self.reroute(i, id, now.as_ref());
            }
            self.nodes.release(i);
        }
    }

    /// A title's info changed: its current measures move from the old
    /// ancestors to the new ones.
    fn reroute(&mut self, i: u32, id: ContentId, info: Option<&Info>) {
        let route = self.outbox.route(id, info);
        let slot = &mut self.nodes.slots[i as usize];
        let old = std::mem::replace(&mut slot.route, route);
        if !slot.m.is_zero() {
            let m = slot.m.measures();
            let mut gone = m;
            differential_dataflow::difference::Abelian::negate(&mut gone);
            self.outbox.forward(&old, &Delta::Whole(gone));
            self.outbox.forward(&route, &Delta::Whole(m));
        }
    }

    /// What leaves the windows at `time`. Both were pushed in slot order
    /// ([`Shard::enter`]), so the slots are visited in memory order, not at random.
    fn leave(&mut self, time: Pane) {
        let exits = self.leaving.remove(&time).unwrap_or_default();
        for (at, e) in exits.iter().enumerate() {
            self.nodes.touch(exits.get(at + AHEAD).map(|e| e.slot));
            let obs = Obs {
                views: e.views.into(),
                watch_ms: e.watch_ms.into(),
            };
            let (cell, score) = (e.cell, false);
            self.apply_leaving(e.slot, &Delta::Cell { cell, obs, score });
        }
        // A score step as long as the score window leaves as it closes.
        let open = self.open_score_exit == Some(time);
        let exits = self.leaving_24h.remove(&time).unwrap_or_default();
        for (at, &(i, v)) in exits.iter().enumerate() {
            self.nodes.touch(exits.get(at + AHEAD).map(|e| e.0));
            if open {
                self.nodes.slots[i as usize].score_exit = 0;
            }
            self.apply_leaving(i, &Delta::Score(v.into()));
        }
    }

    /// One update leaving a window: off the slot, on to its ancestors.
    fn apply_leaving(&mut self, i: u32, d: &Delta) {
        let s = &mut self.nodes.slots[i as usize];
        s.waiting -= 1;
        self.outbox.forward(&s.route, d);
        self.nodes.add(i, d);
        self.nodes.release(i);
    }

    /// What enters at `time`: it leaves the window one window later, and
    /// its views leave the score window one score window after its step began.
    fn enter(&mut self, time: Pane, facts: Vec<(ContentId, Cell, Obs)>) {
        let width = self.stage.window.panes();
        let score_exit = self.stage.spec.score_exit(time);
        self.close_score_exits(score_exit);
        let mut facts = self.admit(facts);
        // In slot order, one update per slot and cell.
        facts.sort_unstable_by_key(|e| (e.0, e.1));
        facts.dedup_by(|next, kept| {
            let same = next.0 == kept.0 && next.1 == kept.1;
            if same {
                kept.2 += next.2;
            }
            same
        });
        let mut exits = Vec::with_capacity(facts.len());
        // A title's score-window views leave as one sum over its step.
        let open = self.leaving_24h.entry(score_exit).or_default();
        let mut views_24h = 0;
        for (at, &(i, cell, obs)) in facts.iter().enumerate() {
            self.nodes.touch(facts.get(at + AHEAD).map(|f| f.0));
            let before = exits.len();
            split32(-obs.views, -obs.watch_ms, |views, watch_ms| {
                exits.push(Exit {
                    slot: i,
                    views,
                    watch_ms,
                    cell,
                })
            });
            views_24h += obs.views;
            let mut exited = exits.len() - before;
            if facts.get(at + 1).is_none_or(|next| next.0 != i) && views_24h != 0 {
                let slot = &mut self.nodes.slots[i as usize];
                exited += fold_exit(open, &mut slot.score_exit, i, -views_24h);
                views_24h = 0;
            }
            self.nodes.slots[i as usize].waiting += exited as u32;
            let d = Delta::Cell {
                cell,
                obs,
                score: true,
            };
            self.outbox.forward(&self.nodes.slots[i as usize].route, &d);
            self.nodes.add(i, &d);
            self.nodes.release(i);
        }
        if !exits.is_empty() {
            // Moved, not copied, where the pane has no exits yet (the usual case).
            match self.leaving.entry(time + width) {
                Entry::Vacant(place) => {
                    place.insert(exits);
                }
                Entry::Occupied(mut place) => place.get_mut().extend(exits),
            }
        }
        if open.is_empty() {
            self.leaving_24h.remove(&score_exit);
        }
    }

    /// The panes of a score step all send their views' exits to one pane,
    /// each title's into one entry, which its slot marks. Once the stage
    /// enters a pane of a later step (`exit` is its exits' pane), the
    /// earlier step's exits are complete and their marks are cleared.
    fn close_score_exits(&mut self, exit: Pane) {
        let Some(open) = self.open_score_exit.replace(exit) else {
            return;
        };
        if open != exit {
            for &(i, _) in self.leaving_24h.get(&open).into_iter().flatten() {
                self.nodes.slots[i as usize].score_exit = 0;
            }
        }
    }

    /// True if the outbox holds deltas for ancestors or the episode total.
    fn has_deltas(&self) -> bool {
        !self.outbox.touched.is_empty() || self.outbox.episode_total != 0
    }

    /// Sends the outbox's deltas of `time`: each ancestor's sum, then the
    /// episode total's.
    fn send_deltas(&mut self, time: Pane, mut give: impl FnMut(StageOut)) {
        self.outbox.drain(|a, m| give(StageOut::Delta(a, time, m)));
        if self.outbox.episode_total != 0 {
            let m = Measures {
                views_24h: std::mem::take(&mut self.outbox.episode_total),
                ..Measures::default()
            };
            give(StageOut::Delta(TOTAL_NODE, time, m));
        }
    }

    /// Reports the changes of the state's size and of the titles outside
    /// the catalog since the last call to the counters.
    fn account(&mut self) {
        let pending: usize = self.pending.values().map(|(a, b)| a.len() + b.len()).sum();
        let now = (pending + self.nodes.nonzero) as i64;
        self.stats.live_state_delta(now - self.state);
        self.state = now;
        if self.stage.titles {
            let now = self.nodes.uncataloged() as i64;
            let delta = now - self.uncataloged;
            if delta != 0 {
                self.stats
                    .model_uncataloged
                    .fetch_add(delta, Ordering::Relaxed);
            }
            self.uncataloged = now;
        }
    }
}
