//! The model's inputs on one worker: facts pre-summed in a cache-sized
//! table, the carry of restored windows, the catalog and its changes.

use differential_dataflow::input::InputSession;

use super::graph::ModelInputs;
use super::Context;
use crate::core::error::{Error, Result};
use crate::core::event::ContentId;
use crate::core::model::{CatalogEntry, Cell, Delta, Measures, ModelSpec, Obs};
use crate::core::time::Pane;
use crate::source::catalog_feed::CatalogFeed;
use crate::source::PartitionId;

/// The model's input of one batch: views and watch time by partition,
/// title, pane and cell.
pub(super) type ModelKey = (PartitionId, ContentId, Pane, Cell);

/// Sums values by key in a small direct-mapped table that stays in the
/// processor's cache: a key meets its earlier updates while it is hot, and
/// an update whose place another key holds pushes that key's sum out. What
/// comes out is summed per key only in part (a key may come out more than
/// once); every receiver sums again, so the table saves work and changes no
/// result. A full hash map of a batch's keys is larger than the cache, and
/// most of the model's keys are met once per batch.
pub struct Combiner<K, V> {
    table: Vec<Option<(K, V)>>,
    bits: u32,
    /// What has left the table, in order.
    pub out: Vec<(K, V)>,
}

impl<K: std::hash::Hash + Eq + Copy, V: Copy + std::ops::AddAssign> Combiner<K, V> {
    /// A table of `2^bits` places.
    pub fn new(bits: u32) -> Self {
        Combiner {
            table: vec![None; 1 << bits],
            bits,
            out: Vec::new(),
        }
    }

    /// Adds `v` to the sum of `k`.
    pub fn add(&mut self, k: K, v: V) {
        use std::hash::BuildHasher;
        let h = rustc_hash::FxBuildHasher.hash_one(k);
        let place = &mut self.table[(h >> (64 - self.bits)) as usize];
        match place {
            Some((key, sum)) if *key == k => *sum += v,
            Some(held) => self.out.push(std::mem::replace(held, (k, v))),
            None => *place = Some((k, v)),
        }
    }

    /// Moves every sum still in the table out.
    pub fn flush(&mut self) {
        for place in self.table.iter_mut() {
            if let Some(held) = place.take() {
                self.out.push(held);
            }
        }
    }
}

/// The model's inputs on one worker.
pub(super) struct ModelFeed {
    pub(super) spec: ModelSpec,
    pub(super) facts: InputSession<Pane, (ContentId, Cell), Obs>,
    /// After a restore: windows as of the checkpoint (as for the views).
    pub(super) carry: Option<InputSession<Pane, ContentId, Measures>>,
    pub(super) catalog: InputSession<Pane, CatalogEntry, i64>,
    /// Catalog changes at run time (worker 0 only).
    pub(super) feed: Option<CatalogFeed>,
    pub(super) panes: Combiner<ModelKey, Obs>,
    /// After the source has finished: the pane up to which to step the inputs.
    pub(super) drain_until: Option<Pane>,
}

impl ModelFeed {
    /// The model's inputs at the start: the catalog entered (spread over the
    /// workers), at the restore time if there is one; worker 0 follows the
    /// catalog's changes.
    pub(super) fn start(
        ctx: &Context,
        inputs: ModelInputs,
        restored_at: Option<Pane>,
        (index, peers): (usize, usize),
    ) -> Result<ModelFeed> {
        let spec =
            (ctx.model).ok_or_else(|| Error::Internal("model inputs without a model".into()))?;
        let ModelInputs {
            facts,
            carry,
            mut catalog,
        } = inputs;
        if let Some(time) = restored_at {
            catalog.advance_to(time);
        }
        for (i, t) in ctx.catalog.titles.iter().enumerate() {
            if i % peers == index {
                catalog.update(crate::core::model::entry(t), 1);
            }
        }
        catalog.flush();
        let feed = match index {
            0 => CatalogFeed::open(&ctx.catalog, &ctx.job)?,
            _ => None,
        };
        Ok(ModelFeed {
            spec,
            facts,
            carry: Some(carry),
            catalog,
            feed,
            panes: Combiner::new(13),
            drain_until: None,
        })
    }

    /// Feeds one title's views and watch time of one cell and pane; before
    /// the restore time `time`, what is still inside the windows enters
    /// through the carry.
    pub(super) fn feed(
        &mut self,
        width: u64,
        time: Pane,
        key: (ContentId, Cell),
        pane: Pane,
        obs: Obs,
    ) {
        use differential_dataflow::difference::Abelian;
        let (id, cell) = key;
        match self.carry.as_mut() {
            Some(carry) if pane < time => {
                let mut m = Measures::default();
                Delta::Cell {
                    cell,
                    obs,
                    score: true,
                }
                .apply(&mut m, true);
                for (part, exit) in [
                    (m.window_part(), pane + width),
                    (m.score_part(), self.spec.score_exit(pane)),
                ] {
                    if exit > time && !part.is_zero() {
                        let mut gone = part;
                        gone.negate();
                        carry.update_at(id, time, part);
                        carry.update_at(id, exit, gone);
                    }
                }
            }
            _ => self.facts.update_at(key, pane, obs),
        }
    }

    /// Moves the facts and catalog inputs to time `t`.
    pub(super) fn advance(&mut self, t: Pane) {
        self.facts.advance_to(t);
        self.catalog.advance_to(t);
    }

    /// Hands what the inputs hold to the dataflow.
    pub(super) fn flush(&mut self) {
        self.facts.flush();
        self.catalog.flush();
        if let Some(c) = self.carry.as_mut() {
            c.flush();
        }
    }
}
