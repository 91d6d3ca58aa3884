//! A shard's nodes and where their changes go: slots in a dense vector,
//! routes resolved when catalog info changes, and the outbox that sums
//! what a title shard sends to each node at one time.

use std::collections::HashMap;

use super::{Fx, TOTAL_NODE};
use crate::core::catalog::Kind;
use crate::core::event::ContentId;
use crate::core::model::{Delta, Info, Measures, ModelSpec, NodeRow, Tally};

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
/// itself, a row of the node stage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Route {
    pub(super) to: [Option<(u32, bool)>; 2],
    pub(super) episode: bool,
}

/// One node of a shard: its current measures, where its changes go, and how
/// many updates waiting to leave a window refer to it.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) id: ContentId,
    /// Its measures, with 32-bit breakdown counts where they fit: 144
    /// bytes a slot rather than 208.
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
            id,
            m: Tally::default(),
            route: Route::default(),
            waiting: 0,
            score_exit: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                self.infos[i as usize] = PackedInfo::default();
                i
            }
            None => {
                self.slots.push(slot);
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
            self.index.remove(&s.id);
            self.free.push(i);
            self.ordered = false;
        }
    }

    /// Sorts the slot positions by id, if slots came or went.
    pub(super) fn order(&mut self) {
        if !self.ordered {
            let slots = &self.slots;
            self.order = self.index.values().copied().collect();
            self.order.sort_unstable_by_key(|&i| slots[i as usize].id);
            self.ordered = true;
        }
    }

    /// `(id, views in the window)` of every node with views, in id order.
    pub(super) fn views(&mut self) -> Vec<(ContentId, i64)> {
        self.order();
        self.order
            .iter()
            .map(|&i| &self.slots[i as usize])
            .filter(|s| s.m.views != 0)
            .map(|s| (s.id, s.m.views))
            .collect()
    }

    /// Rows of the nodes with nonzero measures (titles: but shows and
    /// channels, which the node stage shows), in id order, into `rows`
    /// (empty).
    pub(super) fn rows(
        &mut self,
        mut rows: Vec<NodeRow>,
        titles: bool,
        total: i64,
        t: crate::core::time::Millis,
        spec: &ModelSpec,
    ) -> Vec<NodeRow> {
        self.order();
        rows.reserve(self.nonzero);
        for &i in &self.order {
            let (s, info) = (&self.slots[i as usize], self.infos[i as usize].unpack());
            if s.m.is_zero() || (titles && forwards_itself(info.as_ref())) {
                continue;
            }
            rows.push(NodeRow::new(
                s.id,
                info,
                s.m.clone(),
                total,
                t,
                spec.half_life_ms,
            ));
        }
        rows
    }
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

    /// The route of a title to itself (all its measures, no episode total).
    pub(super) fn own(&mut self, id: ContentId) -> Route {
        Route {
            to: [Some((self.place(id), true)), None],
            episode: false,
        }
    }

    /// Sends `d` along `route`.
    pub(super) fn forward(&mut self, route: &Route, d: &Delta) {
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
