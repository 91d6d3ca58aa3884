//! A partition's event-time clock: the watermark, and the rule that keeps a
//! few bad client clocks from moving it.
//!
//! A partition's watermark is its *base* (the largest event time it has
//! accepted) minus the allowed lateness. Taken alone, that lets one record
//! from a client whose clock is hours ahead move the watermark hours ahead,
//! and every on-time record after it would be late. So a record more than
//! `max_jump` past the base does not move it: it is *held*. The base jumps
//! only when the held records corroborate each other:
//!
//! - **quorum**: at least `quorum` held records are at or past a time `T`, and
//! - **share**: they are more than half of the partition's records since the
//!   first of them arrived (one client's consistent wrong clock among many
//!   honest ones never is).
//!
//! Then the base jumps to the lowest such `T` and every held record is judged
//! again in arrival order. A held record that is not corroborated within
//! `patience` records of its partition is rejected as `clock_skew`; so is one
//! still held when its partition ends, and the oldest when more than
//! `4 × quorum` are held. A held record that the base catches up with (it is
//! within `max_jump` of a base that moved by ordinary records) is accepted,
//! without moving the base.
//!
//! A genuine jump (a partition that resumes after a gap, a replay across an
//! outage) moves the base after `quorum` records of the new time. A partition
//! whose records are further apart than `max_jump` keeps its clock `quorum`
//! records behind its newest record, and loses none of them.
//!
//! A partition that starts holds its first `quorum` records and starts its
//! base at the earliest of them (a far-behind outlier there only delays the
//! first jump; a far-ahead one is held like any other). A partition that ends,
//! or goes idle, before `quorum` records starts with what it has.
//!
//! Decisions depend only on the partition's records in order, never on
//! batching, workers or wall time, so the tests' oracle (`tests/it/common/oracle.rs`) replays this same
//! type and the tests compare against it.
//!
//! ```
//! use popularity::core::clock::{ClockRule, PartitionClock, Verdict};
//! use popularity::core::time::WindowSpec;
//!
//! let rule = ClockRule { lateness_ms: 120_000, max_jump_ms: 600_000, quorum: 3, patience: 8 };
//! let mut clock: PartitionClock<u32> = PartitionClock::new(rule, WindowSpec::hourly());
//! let mut decided = Vec::new();
//! let minute = 60_000;
//! // The first three records start the clock at the earliest of them.
//! for (k, t) in [10, 11, 12].iter().enumerate() {
//!     clock.offer(t * minute, k as u32, &mut decided);
//! }
//! assert!(decided.iter().all(|d| d.2 == Verdict::Accept));
//! // One record three hours ahead is held, and does not move the watermark.
//! clock.offer(190 * minute, 99, &mut decided);
//! assert_eq!(clock.base(), Some(12 * minute));
//! // Honest records keep arriving; after `patience` records the outlier is rejected.
//! for k in 0..8 {
//!     clock.offer((13 + k) * minute, 100 + k as u32, &mut decided);
//! }
//! assert!(decided.iter().any(|d| d.0 == 99 && matches!(d.2, Verdict::Skew { .. })));
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::core::time::{Millis, WindowSpec};

/// The settings of the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRule {
    /// How far behind the base an event may be and still count.
    pub lateness_ms: Millis,
    /// How far past the base a record may be and still move it alone.
    pub max_jump_ms: Millis,
    /// Held records that must agree before the base jumps.
    pub quorum: usize,
    /// Records of the partition a held record waits for corroboration.
    pub patience: u64,
}

impl ClockRule {
    /// The default rule for a given lateness: records up to 1 minute ahead
    /// move the base alone; further ones need 16 agreeing records within 1 000.
    pub fn with_lateness(lateness_ms: Millis) -> Self {
        ClockRule {
            lateness_ms,
            max_jump_ms: 60_000,
            quorum: 16,
            patience: 1_000,
        }
    }
}

impl From<Millis> for ClockRule {
    fn from(lateness_ms: Millis) -> Self {
        ClockRule::with_lateness(lateness_ms)
    }
}

/// What becomes of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted.
    Accept,
    /// Behind the watermark by this many ms: dead-lettered as `late`.
    Late {
        /// Watermark minus event time.
        behind_ms: Millis,
    },
    /// Never corroborated: dead-lettered as `clock_skew`.
    Skew {
        /// Event time minus the base when it was rejected (0 with no base).
        ahead_ms: Millis,
    },
}

/// A record waiting for corroboration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held<T> {
    /// Its event time.
    pub time: Millis,
    /// Its sequence number among the partition's records.
    pub seq: u64,
    /// What the caller gets back with the verdict.
    pub item: T,
}

/// One partition's clock: its base and its held records.
#[derive(Clone, Debug)]
pub struct PartitionClock<T> {
    rule: ClockRule,
    window: WindowSpec,
    base: Option<Millis>,
    /// The first millisecond of the watermark's pane: earlier times are late.
    first_ms: Millis,
    held: VecDeque<Held<T>>,
    /// Records offered so far.
    seq: u64,
    /// Largest `ahead_ms` rejected so far, for the gauge.
    pub max_skew_ms: Millis,
}

impl<T> PartitionClock<T> {
    /// A clock that has seen nothing.
    pub fn new(rule: ClockRule, window: WindowSpec) -> Self {
        PartitionClock {
            rule,
            window,
            base: None,
            first_ms: 0,
            held: VecDeque::new(),
            seq: 0,
            max_skew_ms: 0,
        }
    }

    /// A clock restored from a checkpoint.
    pub fn restored(
        rule: ClockRule,
        window: WindowSpec,
        base: Option<Millis>,
        seq: u64,
        held: Vec<Held<T>>,
    ) -> Self {
        let mut clock = PartitionClock {
            rule,
            window,
            base: None,
            first_ms: 0,
            held: held.into(),
            seq,
            max_skew_ms: 0,
        };
        if let Some(b) = base {
            clock.set_base(b);
        }
        clock
    }

    /// Largest accepted event time that the rule trusts.
    pub fn base(&self) -> Option<Millis> {
        self.base
    }

    /// Records offered so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The records waiting for corroboration, oldest first.
    pub fn held(&self) -> impl Iterator<Item = &Held<T>> {
        self.held.iter()
    }

    /// The watermark in ms, once the clock has started.
    pub fn millis(&self) -> Option<Millis> {
        self.base.map(|b| b - self.rule.lateness_ms)
    }

    /// The least pane that may still receive data.
    pub fn pane(&self) -> u64 {
        self.millis()
            .and_then(|ms| self.window.pane_of(ms))
            .unwrap_or(0)
    }

    /// Judges a record at event time `time`: the verdict on it, and on any
    /// held records it settles, lands in `out` as `(item, time, verdict)`.
    pub fn offer(&mut self, time: Millis, item: T, out: &mut Vec<(T, Millis, Verdict)>) {
        if let Some(verdict) = self.in_line(time) {
            out.push((item, time, verdict));
            return;
        }
        self.seq += 1;
        let held = self.held.len();
        self.admit(time, self.seq, item, true, out);
        let fresh = self.held.len() > held;
        self.settle(fresh, out);
    }

    /// The common case of [`offer`](Self::offer), without the item: a record
    /// in line while nothing is held is decided at once. `None`: the record
    /// was not counted as offered; give it to `offer`.
    #[inline]
    pub fn in_line(&mut self, time: Millis) -> Option<Verdict> {
        match self.base {
            Some(base) if self.held.is_empty() && time <= base + self.rule.max_jump_ms => {
                self.seq += 1;
                Some(self.judge_in_line(base, time, true))
            }
            _ => None,
        }
    }

    /// Judges a record that is not ahead of `base`; an accepted one moves the
    /// base if `advance`.
    #[inline]
    fn judge_in_line(&mut self, base: Millis, time: Millis, advance: bool) -> Verdict {
        // Late iff its pane lies before the watermark's pane (times before the
        // epoch have no pane and are never countable).
        if time < self.first_ms || time < 0 {
            Verdict::Late {
                behind_ms: base - self.rule.lateness_ms - time,
            }
        } else {
            // Branch-free: with disordered input `time > base` is a coin toss,
            // and a mispredicted branch here costs more than the store.
            let moved = if advance { base.max(time) } else { base };
            self.set_base(moved);
            Verdict::Accept
        }
    }

    /// Moves the base, and the first countable millisecond with it.
    #[inline]
    fn set_base(&mut self, base: Millis) {
        self.base = Some(base);
        let mark = base - self.rule.lateness_ms;
        if mark >= self.first_ms && mark - self.first_ms < self.window.slide_ms {
            return; // still in the same pane: spare the division (this runs for most records)
        }
        self.first_ms = match self.window.pane_of(mark) {
            Some(p) => self.window.pane_start(p),
            None => 0,
        };
    }

    /// Decides a record now (an accepted one moves the base if `advance`), or holds it.
    fn admit(
        &mut self,
        time: Millis,
        seq: u64,
        item: T,
        advance: bool,
        out: &mut Vec<(T, Millis, Verdict)>,
    ) {
        match self.base {
            Some(base) if time <= base + self.rule.max_jump_ms => {
                let verdict = self.judge_in_line(base, time, advance);
                out.push((item, time, verdict));
            }
            _ => {
                self.held.push_back(Held { time, seq, item });
                // Bounded: a flood of records that never corroborate costs no more.
                if self.held.len() > 4 * self.rule.quorum.max(1) {
                    if let Some(h) = self.held.pop_front() {
                        self.reject(h, out);
                    }
                }
            }
        }
    }

    /// Starts, jumps, releases and expires held records until nothing changes.
    /// `fresh`: a record was just held, so a group may newly corroborate
    /// (a group can only qualify when a record joins it).
    fn settle(&mut self, mut fresh: bool, out: &mut Vec<(T, Millis, Verdict)>) {
        loop {
            if self.held.is_empty() {
                return;
            }
            if self.base.is_none() {
                if self.held.len() < self.rule.quorum.max(1) {
                    return;
                }
                self.start(out);
                fresh = true;
                continue;
            }
            if fresh {
                fresh = false;
                if let Some(to) = self.corroborated() {
                    self.set_base(to);
                    self.rejudge(true, out);
                    fresh = true;
                    continue;
                }
            }
            if self.release(out) {
                continue;
            }
            self.expire(out);
            return;
        }
    }

    /// Starts the base at the earliest held time and judges the held records.
    fn start(&mut self, out: &mut Vec<(T, Millis, Verdict)>) {
        if let Some(b) = self.held.iter().map(|h| h.time).min() {
            self.set_base(b);
        }
        self.rejudge(true, out);
    }

    /// Judges every held record again, in arrival order.
    fn rejudge(&mut self, advance: bool, out: &mut Vec<(T, Millis, Verdict)>) {
        let held = std::mem::take(&mut self.held);
        for h in held {
            self.admit(h.time, h.seq, h.item, advance, out);
        }
    }

    /// Accepts held records that the base has caught up with; true if any.
    /// They do not move the base: they were out of line when they came, and
    /// the records since are the better witnesses of the partition's time.
    fn release(&mut self, out: &mut Vec<(T, Millis, Verdict)>) -> bool {
        let Some(base) = self.base else { return false };
        let reach = base + self.rule.max_jump_ms;
        if self.held.iter().all(|h| h.time > reach) {
            return false;
        }
        self.rejudge(false, out);
        true
    }

    /// The time a jump to which the held records corroborate: the lowest `T`
    /// such that at least `quorum` held records are at or past `T` and they
    /// are more than half of the partition's records since the first of them
    /// arrived. O(n log n) in the held records.
    fn corroborated(&self) -> Option<Millis> {
        self.corroborated_by(self.rule.quorum.max(1) as u64)
    }

    fn corroborated_by(&self, quorum: u64) -> Option<Millis> {
        if (self.held.len() as u64) < quorum {
            return None;
        }
        let mut by_time: Vec<(Millis, u64)> = self.held.iter().map(|h| (h.time, h.seq)).collect();
        by_time.sort_unstable_by(|a, b| b.cmp(a));
        let mut first = u64::MAX;
        let mut to = None;
        for (members, (time, seq)) in (1u64..).zip(by_time) {
            first = first.min(seq);
            if members >= quorum && members * 2 > self.seq - first + 1 {
                to = Some(time);
            }
        }
        to
    }

    /// Rejects held records that have waited `patience` records.
    fn expire(&mut self, out: &mut Vec<(T, Millis, Verdict)>) {
        while let Some(front) = self.held.front() {
            if self.seq - front.seq < self.rule.patience {
                break;
            }
            if let Some(h) = self.held.pop_front() {
                self.reject(h, out);
            }
        }
    }

    fn reject(&mut self, h: Held<T>, out: &mut Vec<(T, Millis, Verdict)>) {
        let ahead_ms = self.base.map_or(0, |b| h.time - b);
        self.max_skew_ms = self.max_skew_ms.max(ahead_ms);
        out.push((h.item, h.time, Verdict::Skew { ahead_ms }));
    }

    /// The partition went idle: a clock that has not started starts with
    /// what it holds (records must not wait for company that may never come).
    pub fn idle(&mut self, out: &mut Vec<(T, Millis, Verdict)>) {
        if self.base.is_none() && !self.held.is_empty() {
            self.start(out);
            self.settle(true, out);
        }
    }

    /// The partition ended: start if needed; held records that are the
    /// majority of the records since the first of them are accepted (no more
    /// can come to make a quorum: the tail of a sparse partition); the rest
    /// are rejected.
    pub fn finish(&mut self, out: &mut Vec<(T, Millis, Verdict)>) {
        self.idle(out);
        while let Some(to) = self.corroborated_by(1) {
            self.set_base(to);
            self.rejudge(true, out);
        }
        while let Some(h) = self.held.pop_front() {
            self.reject(h, out);
        }
    }
}

#[cfg(test)]
mod tests;
