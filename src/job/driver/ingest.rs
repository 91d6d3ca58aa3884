//! Judging a batch: bad records to dead letters, each event through its
//! partition's clock (late or skewed → dead letters), views pre-aggregated
//! by `(content, pane)` into the input and the checkpoint ledger.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

use super::{Driver, Views};
use crate::checkpoint::fact_key;
use crate::core::clock::{PartitionClock, Verdict};
use crate::core::error::Result;
use crate::core::event::{ContentId, EventType, WatchEvent};
use crate::core::model::{cell_of, Obs};
use crate::core::stats::Stats;
use crate::core::time::{rfc3339, Millis, Pane};
use crate::job::restore::{feed, Clock, Decided};
use crate::sink::deadletter::DeadLetter;
use crate::source::{Batch, PartitionId};

/// Pre-aggregated views of one batch, by partition (for the checkpoint ledger).
pub type PaneCounts = HashMap<(PartitionId, ContentId, Pane), i64, BuildHasherDefault<FxHasher>>;

impl Driver<'_> {
    /// Classifies one batch: bad → dead letters; each event through its
    /// partition's clock: late or skewed → dead letters, views → pre-aggregated input.
    pub(super) fn ingest(&mut self, session: &mut Views) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        let mut marks = std::mem::take(&mut self.marks);
        let judged = self.judge_batch(session, &batch, &mut marks);
        self.batch = batch;
        self.marks = marks;
        judged?;
        self.note_arrivals(self.floor(session));
        self.publish_clocks();
        self.feed_panes(session);
        let stats = &self.ctx.stats;
        let taken = self.fed_until.saturating_sub(1);
        stats
            .taken_pane
            .fetch_max(taken, std::sync::atomic::Ordering::Relaxed);
        Stats::add(&stats.read, self.batch.read);
        Stats::add(&stats.decoded, self.batch.events.len() as u64);
        Stats::add(&stats.invalid, self.batch.rejects.len() as u64);
        Stats::add(&stats.dead_lettered, self.batch.rejects.len() as u64);
        if !self.batch.rejects.is_empty() {
            self.dead_dirty = true;
        }
        Ok(())
    }

    /// Dead-letters the batch's rejects and runs its events through their clocks.
    fn judge_batch(
        &mut self,
        session: &Views,
        batch: &Batch,
        marks: &mut BTreeMap<PartitionId, Clock>,
    ) -> Result<()> {
        for reject in &batch.rejects {
            let letter = DeadLetter {
                reason: reject.error.code().to_string(),
                detail: reject.error.to_string(),
                source: self.source_name.clone(),
                partition: reject.partition,
                position: reject.position,
                raw: String::from_utf8_lossy(&reject.raw).into_owned(),
            };
            self.dead.write(&letter, &reject.raw)?;
        }
        let floor = self.floor(session);
        let floor_ms = self.ctx.window.pane_start(floor);
        let slide_ms = self.ctx.window.slide_ms;
        let mut decided = std::mem::take(&mut self.decided);
        let mut start = 0;
        // The common case's sums stay in registers until the batch is done.
        let (mut views, mut top) = (0u64, None::<Pane>);
        // Runs of one partition share a clock lookup.
        while start < batch.events.len() {
            let partition = batch.partitions[start];
            let end = start
                + batch.partitions[start..]
                    .iter()
                    .take_while(|p| **p == partition)
                    .count();
            let clock = marks
                .entry(partition)
                .or_insert_with(|| PartitionClock::new(self.ctx.clock, self.ctx.window));
            let key = self.ledger_key(partition);
            for (event, &position) in batch.events[start..end]
                .iter()
                .zip(&batch.positions[start..end])
            {
                match clock.in_line(event.event_time) {
                    // The common case first: accepted, at or after the input's time.
                    Some(Verdict::Accept) if event.event_time >= floor_ms => {
                        let pane = (event.event_time / slide_ms) as Pane;
                        top = top.max(Some(pane));
                        views += self.count(key, event, pane);
                    }
                    Some(verdict) => self.judge(floor, partition, event, position, verdict)?,
                    None => {
                        clock.offer(event.event_time, (event.clone(), position), &mut decided);
                        for ((event, position), _, verdict) in decided.drain(..) {
                            self.judge(floor, partition, &event, position, verdict)?;
                        }
                    }
                }
            }
            start = end;
        }
        if let Some(pane) = top {
            self.fed_until = self.fed_until.max(pane + 1);
        }
        self.views += views;
        self.decided = decided;
        Ok(())
    }

    /// Hands the batch's sampled arrivals to the freshness probe: each
    /// event's pane, if the input can still take it (an event the clock
    /// later finds late is still noted; late events are counted apart).
    fn note_arrivals(&self, floor: Pane) {
        let events = &self.batch.events;
        let samples: Vec<(Pane, Millis)> = (self.batch.arrivals.iter())
            .filter_map(|&(i, at)| Some((self.ctx.window.pane_of(events.get(i)?.event_time)?, at)))
            .filter(|&(pane, _)| pane >= floor)
            .collect();
        self.ctx.stats.freshness.note(&samples);
        if self.ctx.job.metrics.provisional && !samples.is_empty() {
            // Shown provisionally by counts made after the event is taken.
            let taken = crate::core::time::now_ms().max(0) as u64;
            let samples: Vec<_> = samples.iter().map(|&(_, at)| (taken, at)).collect();
            self.ctx.stats.early_freshness.note(&samples);
        }
    }

    /// The least pane the input can still take: a partition that was idle may
    /// lag the input's time (after a restore, panes before the checkpoint time
    /// still can be fed, through the carry input).
    fn floor(&self, session: &Views) -> Pane {
        if self.carry.is_some() {
            0
        } else {
            *session.time()
        }
    }

    /// Acts on one verdict: counts the event into the pre-aggregated input, or dead-letters it.
    fn judge(
        &mut self,
        floor: Pane,
        partition: PartitionId,
        event: &WatchEvent,
        position: u64,
        verdict: Verdict,
    ) -> Result<()> {
        let window = self.ctx.window;
        let pane = window.pane_of(event.event_time);
        let (reason, detail) = match (verdict, pane) {
            (Verdict::Accept, Some(pane)) if pane >= floor => {
                self.accept(partition, event, pane);
                return Ok(());
            }
            (Verdict::Accept, _) => (
                "late",
                format!(
                    "event time {} is {} behind the input frontier {} (partition {partition} was idle)",
                    rfc3339(event.event_time),
                    span(window.pane_start(floor) - event.event_time),
                    rfc3339(window.pane_start(floor))
                ),
            ),
            (Verdict::Late { behind_ms }, _) => (
                "late",
                format!(
                    "event time {} is {} behind the watermark {} of partition {partition}",
                    rfc3339(event.event_time),
                    span(behind_ms),
                    rfc3339(event.event_time + behind_ms)
                ),
            ),
            (Verdict::Skew { ahead_ms }, _) => (
                "clock_skew",
                format!(
                    "event time {} is {} ahead of partition {partition}'s clock and no other records corroborated it",
                    rfc3339(event.event_time),
                    span(ahead_ms)
                ),
            ),
        };
        let stats = &self.ctx.stats;
        if reason == "late" {
            Stats::add(&stats.late, 1);
        } else {
            Stats::add(&stats.clock_skew, 1);
        }
        Stats::add(&stats.dead_lettered, 1);
        self.dead_dirty = true;
        let raw = event.to_json();
        let letter = DeadLetter {
            reason: reason.into(),
            detail,
            source: self.source_name.clone(),
            partition,
            position,
            raw,
        };
        self.dead.write(&letter, letter.raw.as_bytes())
    }

    /// Counts an accepted event into this batch's pre-aggregated input.
    fn accept(&mut self, partition: PartitionId, event: &WatchEvent, pane: Pane) {
        self.fed_until = self.fed_until.max(pane + 1);
        let key = self.ledger_key(partition);
        self.views += self.count(key, event, pane);
    }

    /// The partition a count is kept under: only the checkpoint ledger needs
    /// counts apart by partition; without it, one count per (content, pane)
    /// keeps the dataflow's input as small as a worker's partitions allow.
    #[inline]
    fn ledger_key(&self, partition: PartitionId) -> PartitionId {
        if self.checkpointer.is_some() {
            partition
        } else {
            0
        }
    }

    /// Adds an accepted event to the pre-aggregated input; returns the views it is (0 or 1).
    #[inline(always)]
    fn count(&mut self, key: PartitionId, event: &WatchEvent, pane: Pane) -> u64 {
        let started = event.event_type == EventType::StartedVideo;
        match self.model.as_mut() {
            // With the model, its input carries the views (and its title stage counts them).
            Some(m) => m.panes.add(
                (key, event.content_id, pane, cell_of(event)),
                Obs::of_event(event),
            ),
            None if started => *self.panes.entry((key, event.content_id, pane)).or_insert(0) += 1,
            None => {}
        }
        started as u64
    }

    /// A partition ended: its clock decides what it still holds.
    pub(super) fn finish_partition(
        &mut self,
        session: &mut Views,
        partition: PartitionId,
    ) -> Result<()> {
        self.finished.insert(partition);
        if let Some(mut clock) = self.marks.remove(&partition) {
            let mut decided = std::mem::take(&mut self.decided);
            clock.finish(&mut decided);
            self.act_on(session, partition, decided)?;
        }
        Ok(())
    }

    /// Acts on verdicts a clock gave outside a batch, then feeds what they counted.
    fn act_on(
        &mut self,
        session: &mut Views,
        partition: PartitionId,
        mut decided: Vec<Decided>,
    ) -> Result<()> {
        let floor = self.floor(session);
        for ((event, position), _, verdict) in decided.drain(..) {
            self.judge(floor, partition, &event, position, verdict)?;
        }
        self.decided = decided;
        self.feed_panes(session);
        Ok(())
    }

    /// Idle partitions whose clock has not started start with what they hold.
    pub(super) fn start_idle_clocks(&mut self, session: &mut Views) -> Result<()> {
        let waiting: Vec<PartitionId> = self
            .marks
            .iter()
            .filter(|(p, c)| {
                c.base().is_none() && c.held().next().is_some() && self.source.is_idle(**p)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in waiting {
            let mut decided = std::mem::take(&mut self.decided);
            if let Some(clock) = self.marks.get_mut(&p) {
                clock.idle(&mut decided);
            }
            self.act_on(session, p, decided)?;
        }
        Ok(())
    }

    /// Each partition's watermark and the largest skew it rejected, for the gauges.
    fn publish_clocks(&self) {
        if let Ok(mut board) = self.ctx.stats.partition_clocks.lock() {
            for (p, c) in &self.marks {
                board.insert(*p, (c.millis().unwrap_or(0), c.max_skew_ms));
            }
        }
    }

    /// Hands this batch's pre-aggregated counts to the dataflow (and the checkpoint ledger).
    fn feed_panes(&mut self, session: &mut Views) {
        Stats::add(&self.ctx.stats.views, std::mem::take(&mut self.views));
        let width = self.ctx.window.panes();
        for ((partition, content, pane), n) in self.panes.drain() {
            match self.carry.as_mut() {
                Some((carry, time)) => feed(session, carry, *time, width, content, pane, n),
                None => session.update_at(content, pane, n),
            }
            if let Some(cp) = self.checkpointer.as_mut() {
                cp.record(partition, content, pane, n);
            }
        }
        if let Some(m) = self.model.as_mut() {
            let time = self.carry.as_ref().map_or(0, |(_, t)| *t);
            m.panes.flush();
            let mut panes = std::mem::take(&mut m.panes.out);
            for ((partition, content, pane, cell), obs) in panes.drain(..) {
                m.feed(width, time, (content, cell), pane, obs);
                if let Some(cp) = self.checkpointer.as_mut() {
                    for (watch, v) in [(false, obs.views), (true, obs.watch_ms)] {
                        if v != 0 {
                            cp.record(partition, fact_key(content, cell, watch), pane, v);
                        }
                    }
                }
            }
            m.panes.out = panes;
        }
    }
}

/// A duration for people: `95.0 s`, `3 min 5 s`, `3 h 0 min`.
fn span(ms: Millis) -> String {
    let s = ms / 1000;
    if s < 120 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if s < 7200 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}
