//! When a title shard's sums reach the shows and channels: at the end of
//! each block of panes, not after every pane.
//!
//! Catching up (a replay, a backlog, a restart), a million-title shard
//! moves through many panes a second, and a show touched by any of its
//! episodes got a full delta from each shard at every pane: as many
//! deltas as the views themselves. Summed over a block of panes, a show
//! gets one per block. The blocks are the same for every shard (fixed
//! panes within each hour, and every hour ends one), so after the last
//! pane of a block the node stage holds exactly what a pane-by-pane run
//! holds there. Both stages go only to block ends, so their hours, their
//! live boards and their frontier are exact.
//!
//! Near the clock (live traffic) every pane ends a block, so the boards
//! move every pane as before. Which panes are near is judged by the wall
//! clock: a title shard counts a wider margin than the node stage, so
//! every pane the node stage takes as a block end, each title shard (which
//! judged it earlier, on a clock at most that margin ahead) took as one too.

use crate::core::model::ModelSpec;
use crate::core::time::{Millis, Pane, WindowSpec};

/// How much earlier than the node stage a title shard counts a pane as
/// near the clock: covers the time between the two judgments and the
/// clocks of processes on different hosts disagreeing.
const MARGIN_MS: Millis = 5 * 60_000;

/// Block ends of one stage.
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocks {
    /// Panes in a block (a last, shorter one ends each hour).
    panes: u64,
    per_hour: u64,
    slide_ms: Millis,
    /// Panes that start within this of the clock each end a block.
    near_ms: Millis,
    /// The pane a restore started at: the pane before it ends a block, so
    /// the frontier can reach it while nothing else moves (a stop).
    restored: Option<Pane>,
}

impl Blocks {
    /// The blocks of a title shard (`titles`) or of the node stage.
    pub(super) fn new(window: WindowSpec, spec: &ModelSpec, titles: bool) -> Blocks {
        let margin = if titles { MARGIN_MS } else { 0 };
        Blocks {
            panes: spec.block_panes.max(1),
            per_hour: window.panes_per_hour(),
            slide_ms: window.slide_ms,
            near_ms: spec.near_ms + margin,
            restored: spec.restored_at,
        }
    }

    /// The first pane that is near the clock at `now_ms`: it and every
    /// later pane end a block.
    pub(super) fn first_near(&self, now_ms: Millis) -> Pane {
        ((now_ms - self.near_ms).max(0) / self.slide_ms) as Pane
    }

    /// The last pane of the block holding pane `p` (`near`: [`Blocks::first_near`]).
    ///
    /// ```text
    /// blocks of 10 panes in an hour of 60: 0..=9, 10..=19, …, 50..=59
    /// ```
    pub(super) fn end_of(&self, p: Pane, near: Pane) -> Pane {
        let hour = p - p % self.per_hour;
        let end = hour + ((p - hour) / self.panes + 1) * self.panes - 1;
        let end = end.min(hour + self.per_hour - 1).min(near.max(p));
        match self.restored {
            Some(r) if p < r => end.min(r - 1),
            _ => end,
        }
    }

    /// The largest bound up to `bound` whose last pane ends a block: how
    /// far a stage may go once its inputs are complete before `bound`.
    pub(super) fn floor(&self, bound: Pane, near: Pane) -> Pane {
        let Some(last) = bound.checked_sub(1) else {
            return 0;
        };
        if self.end_of(last, near) == last {
            return bound;
        }
        let hour = last - last % self.per_hour;
        let start = hour + (last - hour) / self.panes * self.panes;
        match self.restored {
            Some(r) if r > start && r <= last => r,
            _ => start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::ModelConfig;

    fn blocks(panes: u64, titles: bool) -> Blocks {
        let window = WindowSpec::hourly();
        let mut spec = ModelConfig::default()
            .spec(window.slide_ms, window.panes())
            .expect("valid");
        spec.block_panes = panes;
        spec.near_ms = 20 * 60_000;
        Blocks::new(window, &spec, titles)
    }

    #[test]
    fn blocks_end_at_fixed_panes_and_at_every_hour_end() {
        let b = blocks(7, false);
        let far = Pane::MAX;
        assert_eq!(b.end_of(0, far), 6);
        assert_eq!(b.end_of(6, far), 6);
        assert_eq!(b.end_of(7, far), 13);
        assert_eq!(b.end_of(57, far), 59, "the hour's last block is shorter");
        assert_eq!(b.end_of(60, far), 66, "each hour starts a block");
        assert_eq!(b.floor(0, far), 0);
        assert_eq!(b.floor(5, far), 0, "inside the first block");
        assert_eq!(b.floor(7, far), 7);
        assert_eq!(b.floor(13, far), 7);
        assert_eq!(b.floor(60, far), 60);
        assert_eq!(b.floor(61, far), 60);
        // Every floor is a bound whose last pane ends a block, and no
        // larger one up to the bound is.
        for bound in 1..400 {
            let f = b.floor(bound, far);
            assert!(f <= bound);
            assert!(f == 0 || b.end_of(f - 1, far) == f - 1, "{bound} → {f}");
            assert!((f + 1..=bound).all(|g| b.end_of(g - 1, far) != g - 1));
        }
    }

    #[test]
    fn the_pane_before_a_restore_ends_a_block() {
        let mut b = blocks(10, false);
        b.restored = Some(58);
        let far = Pane::MAX;
        assert_eq!(b.end_of(51, far), 57);
        assert_eq!(b.end_of(58, far), 59);
        assert_eq!(b.floor(58, far), 58, "the frontier can reach the restore");
        assert_eq!(b.floor(59, far), 58);
        assert_eq!(b.floor(57, far), 50);
        assert_eq!(b.floor(60, far), 60);
    }

    #[test]
    fn near_the_clock_every_pane_ends_a_block() {
        let b = blocks(10, false);
        let near = 125;
        assert_eq!(b.end_of(121, near), 125, "up to the first near pane");
        assert_eq!(b.end_of(125, near), 125);
        assert_eq!(b.end_of(131, near), 131);
        assert_eq!(b.floor(132, near), 132);
        assert_eq!(b.floor(124, near), 120);
        let now = 1_000 * 60_000;
        assert_eq!(b.first_near(now), 1_000 - 20);
    }

    #[test]
    fn a_title_shard_takes_every_pane_the_node_stage_takes_as_a_block_end() {
        let (titles, nodes) = (blocks(10, true), blocks(10, false));
        let now = 5_000 * 60_000;
        // The node stage judges later than the title shards did.
        let (near_t, near_n) = (titles.first_near(now), nodes.first_near(now + 30_000));
        assert!(near_t < near_n);
        for p in 4_000..5_100 {
            if nodes.end_of(p, near_n) == p {
                assert_eq!(titles.end_of(p, near_t), p, "pane {p}");
            }
        }
    }
}
