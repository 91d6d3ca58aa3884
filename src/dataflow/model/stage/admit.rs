//! Which facts get a title slot: ids outside the catalog get one each
//! only up to `model.uncataloged-limit` a shard; the rest are counted
//! together under the overflow title.

use std::sync::atomic::Ordering;

use super::Shard;
use crate::core::event::ContentId;
use crate::core::model::{Cell, Obs, OVERFLOW_TITLE};

impl Shard {
    /// The slot of each fact's title. An id outside the catalog gets a slot
    /// of its own while its shard keeps fewer than the limit of them, else
    /// its fact goes to the overflow title (counted). Near the limit the
    /// facts are taken in id order, so which ids get a slot depends on the
    /// input alone (a restore replays the same choice).
    pub(super) fn admit(
        &mut self,
        mut facts: Vec<(ContentId, Cell, Obs)>,
    ) -> Vec<(u32, Cell, Obs)> {
        let limit = self.stage.spec.uncataloged_limit;
        let near = self.nodes.uncataloged() + facts.len() > limit;
        if !self.stage.titles || !near {
            return facts
                .into_iter()
                .map(|(id, cell, obs)| (self.slot(id), cell, obs))
                .collect();
        }
        facts.sort_unstable_by_key(|f| (f.0, f.1));
        let mut overflowed = 0;
        let admitted = facts
            .into_iter()
            .map(|(id, cell, obs)| {
                let known = self.nodes.index.contains_key(&id);
                if known || self.nodes.uncataloged() < limit {
                    return (self.slot(id), cell, obs);
                }
                overflowed += 1;
                (self.slot(OVERFLOW_TITLE), cell, obs)
            })
            .collect();
        if overflowed > 0 {
            self.note_overflow(overflowed);
        }
        admitted
    }

    /// Counts facts sent to the overflow title; says so once per shard.
    fn note_overflow(&mut self, facts: u64) {
        if self.overflowed == 0 {
            tracing::warn!(
                worker = self.worker,
                limit = self.stage.spec.uncataloged_limit,
                "bad input: more ids outside the catalog than model.uncataloged-limit; \
                 further ones are counted together under title {OVERFLOW_TITLE} \
                 (popularity_model_overflowed_facts_total)"
            );
        }
        self.overflowed += facts;
        self.stats
            .model_overflowed
            .fetch_add(facts, Ordering::Relaxed);
    }
}
