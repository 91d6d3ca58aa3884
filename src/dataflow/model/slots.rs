//! A shard's nodes and where their changes go: slots in a dense vector,
//! routes resolved when catalog info changes, and the outbox that sums
//! what a title shard sends to each node at one time.

use std::collections::HashMap;

use super::{Fx, TOTAL_NODE};
use crate::core::catalog::Kind;
use crate::core::event::ContentId;
use crate::core::model::{Delta, Info, Measures, ModelSpec, NodeRow, Tally};

/// How many slots ahead a walk over scattered slots reads ([`Slots::touch`]).
pub(super) const AHEAD: usize = 12;

/// Where a title's measures go: shows and channels to their own node (they
/// are rows of the node stage), everything else to its ancestors, episodes'
/// score-window views also to the episode total. At most three targets, so
/// no allocation per fact.
pub(super) fn targets(info: Option<&Info>) -> impl Iterator<Item = (ContentId, bool)> {
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
pub(super) fn forwards_itself(info: Option<&Info>) -> bool {
    matches!(info.map(|i| i.kind), Some(Kind::Show | Kind::Channel))
}

/// Where a title's changes go, resolved when its catalog info changes: up
/// to two nodes (by their place in the outbox, and whether `views_24h` goes
/// too) and, for episodes, the episode total. A show or channel goes to
/// itself, a row of the node stage. 12 bytes: which parts are present is
/// a tag, not a sentinel place.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Route {
    places: [u32; 2],
    /// Bits 0–1: place present; bits 2–3: with `views_24h`; bit 4: the
    /// episode total.
    flags: u8,
}

impl Route {
    /// The route to one node, with all its measures.
    pub(super) fn to_one(place: u32) -> Route {
        let mut route = Route::default();
        route.add(place, true);
        route
    }

    /// Adds a node; a third is not kept (a title has at most two).
    pub(super) fn add(&mut self, place: u32, with_24h: bool) {
        let n = (self.flags & 0b11).count_ones() as usize;
        if n < self.places.len() {
            self.places[n] = place;
            self.flags |= (1 << n) | (u8::from(with_24h) << (n + 2));
        }
    }

    /// Whether it goes to any node.
    pub(super) fn is_routed(&self) -> bool {
        self.flags & 0b11 != 0
    }

    /// Its nodes, each with whether `views_24h` goes too.
    pub(super) fn nodes(&self) -> impl Iterator<Item = (u32, bool)> + '_ {
        (0..self.places.len())
            .filter(|n| self.flags & (1 << n) != 0)
            .map(|n| (self.places[n], self.flags & (1 << (n + 2)) != 0))
    }

    /// Whether it goes to the episode total.
    pub(super) fn episode(&self) -> bool {
        self.flags & (1 << 4) != 0
    }

    /// Sends it to the episode total too.
    pub(super) fn set_episode(&mut self) {
        self.flags |= 1 << 4;
    }
}

/// One node of a shard: its current measures, where its changes go, and how
/// many updates waiting to leave a window refer to it. 128 bytes on a
/// 64-byte boundary, so a slot is two cache lines, not three: every view
/// entering or leaving a window touches its title's slot, most often a
/// cache miss at a million titles. Its id is kept apart ([`Slots::ids`]).
#[derive(Clone, Debug)]
#[repr(align(64))]
pub(super) struct Slot {
    /// Its measures, with 32-bit breakdown counts where they fit: 104
    /// bytes rather than 168.
    pub(super) m: Tally,
    pub(super) route: Route,
    pub(super) waiting: u32,
    /// Its entry among the open score step's exits, plus one (0: none).
    pub(super) score_exit: u32,
}

/// A slot's catalog info, 40 bytes rather than an `Option<Info>`'s 72
/// (one per title: 32 MB less at a million titles). Exact: which parts are
/// present is a tag, not a sentinel value.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PackedInfo {
    parent: u64,
    show: u64,
    channel: u64,
    event_end: i64,
    /// Bit 7: info present; bits 0–2: the kind's place in [`KINDS`];
    /// bits 3–6: parent, show, channel, event end present.
    tag: u8,
}

/// Kinds by their place in a [`PackedInfo`]'s tag.
const KINDS: [Kind; 6] = Kind::ALL;

impl PackedInfo {
    fn pack(info: Option<Info>) -> PackedInfo {
        let Some(i) = info else {
            return PackedInfo::default();
        };
        // Places in `KINDS`; a new kind fails to compile here.
        let kind: u8 = match i.kind {
            Kind::Channel => 0,
            Kind::Show => 1,
            Kind::Episode => 2,
            Kind::Movie => 3,
            Kind::Live => 4,
            Kind::Clip => 5,
        };
        let bit = |present: bool, n: u8| u8::from(present) << n;
        PackedInfo {
            parent: i.parent.unwrap_or(0),
            show: i.show.unwrap_or(0),
            channel: i.channel.unwrap_or(0),
            event_end: i.event_end.unwrap_or(0),
            tag: 0x80
                | kind
                | bit(i.parent.is_some(), 3)
                | bit(i.show.is_some(), 4)
                | bit(i.channel.is_some(), 5)
                | bit(i.event_end.is_some(), 6),
        }
    }

    fn unpack(self) -> Option<Info> {
        let has = |n: u8| self.tag & (1 << n) != 0;
        has(7).then(|| Info {
            kind: KINDS[(self.tag & 0x07) as usize % KINDS.len()],
            parent: has(3).then_some(self.parent),
            show: has(4).then_some(self.show),
            channel: has(5).then_some(self.channel),
            event_end: has(6).then_some(self.event_end),
        })
    }
}

/// A shard's nodes in a dense vector, found by id through an index: the
/// windows refer to slots by position, so an update leaving its window
/// costs no lookup, and the hourly rows are a scan, not a hash walk.
#[derive(Default)]
pub(super) struct Slots {
    pub(super) index: HashMap<ContentId, u32, Fx>,
    pub(super) slots: Vec<Slot>,
    /// Node ids by slot.
    pub(super) ids: Vec<ContentId>,
    /// Catalog info by slot, apart from the slots: read by the hourly rows
    /// and catalog changes only.
    infos: Vec<PackedInfo>,
    pub(super) free: Vec<u32>,
    /// Slot positions in id order, rebuilt when slots come or go.
    pub(super) order: Vec<u32>,
    pub(super) ordered: bool,
    /// Slots with nonzero measures.
    pub(super) nonzero: usize,
    /// Slots with catalog info.
    pub(super) with_info: usize,
}

impl Slots {
    /// The slot of `id`, made if it has none.
    pub(super) fn slot(&mut self, id: ContentId) -> u32 {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        let slot = Slot {
            m: Tally::default(),
            route: Route::default(),
            waiting: 0,
            score_exit: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                self.ids[i as usize] = id;
                self.infos[i as usize] = PackedInfo::default();
                i
            }
            None => {
                self.slots.push(slot);
                self.ids.push(id);
                self.infos.push(PackedInfo::default());
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id, i);
        self.ordered = false;
        i
    }

    /// Slot `i`'s catalog info.
    pub(super) fn info(&self, i: u32) -> Option<Info> {
        self.infos[i as usize].unpack()
    }

    /// Sets slot `i`'s catalog info; returns what it was.
    pub(super) fn set_info(&mut self, i: u32, info: Option<Info>) -> Option<Info> {
        let before =
            std::mem::replace(&mut self.infos[i as usize], PackedInfo::pack(info)).unpack();
        match (before.is_some(), info.is_some()) {
            (false, true) => self.with_info += 1,
            (true, false) => self.with_info -= 1,
            _ => {}
        }
        before
    }

    /// Slots of ids the catalog does not know.
    pub(super) fn uncataloged(&self) -> usize {
        self.index.len() - self.with_info
    }

    /// Applies `d` to slot `i`'s measures.
    pub(super) fn add(&mut self, i: u32, d: &Delta) {
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
    pub(super) fn release(&mut self, i: u32) {
        let s = &self.slots[i as usize];
        if s.waiting == 0 && self.infos[i as usize].tag == 0 && s.m.is_zero() {
            self.index.remove(&self.ids[i as usize]);
            self.free.push(i);
            self.ordered = false;
        }
    }

    /// Sorts the slot positions by id, if slots came or went.
    pub(super) fn order(&mut self) {
        if !self.ordered {
            // Sorting pairs reads each key beside its position, not at random.
            let mut pairs: Vec<(ContentId, u32)> =
                self.index.iter().map(|(&k, &i)| (k, i)).collect();
            pairs.sort_unstable();
            self.order.clear();
            self.order.extend(pairs.into_iter().map(|(_, i)| i));
            self.ordered = true;
        }
    }

    /// Reads slot `i` ahead of its use (a visit in slot order far apart),
    /// so its cache lines are on the way while the slots before it are
    /// worked on.
    pub(super) fn touch(&self, i: Option<u32>) {
        if let Some(s) = i.and_then(|i| self.slots.get(i as usize)) {
            std::hint::black_box(s.waiting);
        }
    }

    /// `(id, views in the window)` of every node with views, in id order.
    pub(super) fn views(&mut self) -> Vec<(ContentId, i64)> {
        self.order();
        self.order
            .iter()
            .map(|&i| (self.ids[i as usize], self.slots[i as usize].m.views))
            .filter(|(_, views)| *views != 0)
            .collect()
    }

    /// Rows of the nodes with nonzero measures (titles: but shows and
    /// channels, which the node stage shows), in id order, into `rows`
    /// (empty); with `views`, also what [`Slots::views`] gives, in the same
    /// walk over the slots.
    pub(super) fn rows(
        &mut self,
        mut rows: Vec<NodeRow>,
        mut views: Option<&mut Vec<(ContentId, i64)>>,
        of: RowsOf<'_>,
    ) -> Vec<NodeRow> {
        self.order();
        rows.reserve(self.nonzero);
        for (at, &i) in self.order.iter().enumerate() {
            self.touch(self.order.get(at + AHEAD).copied());
            let (id, s) = (self.ids[i as usize], &self.slots[i as usize]);
            if let Some(views) = views.as_mut().filter(|_| s.m.views != 0) {
                views.push((id, s.m.views));
            }
            if s.m.is_zero() {
                continue;
            }
            let info = self.infos[i as usize].unpack();
            if of.titles && forwards_itself(info.as_ref()) {
                continue;
            }
            let m = s.m.clone();
            rows.push(NodeRow::new(
                id,
                info,
                m,
                of.total,
                of.t,
                of.spec.half_life_ms,
            ));
        }
        rows
    }
}

/// Whose rows [`Slots::rows`] makes, and as of when.
#[derive(Clone, Copy)]
pub(super) struct RowsOf<'a> {
    /// A title stage (shows and channels are the node stage's rows).
    pub(super) titles: bool,
    /// The episode total.
    pub(super) total: i64,
    /// The window's end.
    pub(super) t: crate::core::time::Millis,
    /// The model's settings.
    pub(super) spec: &'a ModelSpec,
}

/// Sums the deltas a title shard sends to each node at one time, in a dense
/// vector: a title's route names its nodes' places, so forwarding a change
/// costs no lookup.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) index: HashMap<ContentId, u32, Fx>,
    pub(super) ids: Vec<ContentId>,
    pub(super) sums: Vec<Measures>,
    pub(super) marked: Vec<bool>,
    pub(super) touched: Vec<u32>,
    pub(super) episode_total: i64,
}

impl Outbox {
    /// The place of node `id`.
    pub(super) fn place(&mut self, id: ContentId) -> u32 {
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
    pub(super) fn route(&mut self, id: ContentId, info: Option<&Info>) -> Route {
        if forwards_itself(info) {
            return Route::to_one(self.place(id));
        }
        let mut route = Route::default();
        for (a, with_24h) in targets(info) {
            if a == TOTAL_NODE {
                route.set_episode();
            } else {
                route.add(self.place(a), with_24h);
            }
        }
        route
    }

    /// The route of a title to itself (all its measures, no episode total).
    pub(super) fn own(&mut self, id: ContentId) -> Route {
        Route::to_one(self.place(id))
    }

    /// Sends `d` along `route`.
    pub(super) fn forward(&mut self, route: &Route, d: &Delta) {
        for (i, with_24h) in route.nodes() {
            let i = i as usize;
            if !self.marked[i] {
                self.marked[i] = true;
                self.touched.push(i as u32);
            }
            d.apply(&mut self.sums[i], with_24h);
        }
        if route.episode() {
            self.episode_total += d.views_24h();
        }
    }

    /// Hands each node's nonzero sum to `give` and clears the sums.
    pub(super) fn drain(&mut self, mut give: impl FnMut(ContentId, Measures)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_two_cache_lines_and_a_route_keeps_what_it_was_given() {
        assert_eq!(std::mem::size_of::<Slot>(), 128);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
        assert_eq!(std::mem::size_of::<Route>(), 12);
        let mut r = Route::default();
        assert!(!r.is_routed() && !r.episode());
        r.add(7, true);
        r.add(u32::MAX, false);
        r.add(9, true); // a third is not kept
        r.set_episode();
        assert!(r.is_routed() && r.episode());
        assert_eq!(
            r.nodes().collect::<Vec<_>>(),
            [(7, true), (u32::MAX, false)]
        );
        assert_eq!(Route::to_one(0).nodes().collect::<Vec<_>>(), [(0, true)]);
        assert!(!Route::to_one(0).episode());
    }

    #[test]
    fn packed_info_gives_back_every_info_exactly() {
        assert_eq!(std::mem::size_of::<PackedInfo>(), 40);
        assert_eq!(PackedInfo::pack(None).unpack(), None);
        let values = [None, Some(0), Some(7), Some(u64::MAX)];
        let ends = [None, Some(0), Some(-5), Some(i64::MIN), Some(i64::MAX)];
        let mut n = 0;
        for kind in KINDS {
            for parent in values {
                for show in values {
                    for channel in values {
                        for event_end in ends {
                            let info = Info {
                                kind,
                                parent,
                                show,
                                channel,
                                event_end,
                            };
                            assert_eq!(PackedInfo::pack(Some(info)).unpack(), Some(info));
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, 6 * 4 * 4 * 4 * 5);
    }
}
