//! The per-worker loop that feeds the dataflow: read a batch, judge it
//! ([`ingest`]), advance the input to the partitions' low watermark, step;
//! checkpoints when due, a final one on stop.
//!
//! It stops reading while the dataflow's frontier trails the input by more
//! than `window.max-lead-panes`, which bounds the memory of in-flight panes.

mod ingest;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::input::InputSession;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use super::model_feed::ModelFeed;
use super::restore::{clock_state, Clock, Decided};
use super::Context;
use crate::checkpoint::{Checkpointer, ClockState, StopStep};
use crate::core::clock::PartitionClock;
use crate::core::error::{Error, Result};
use crate::core::event::ContentId;
use crate::core::stats::Stats;
use crate::core::time::{now_ms, Pane};
use crate::sink::deadletter::{DeadLetter, DeadLetterSink};
use crate::source::{all_finished, Batch, PartitionId, Poll, Source};

pub(super) use ingest::PaneCounts;

/// A worker's input of pre-aggregated views.
type Views = InputSession<Pane, ContentId, i64>;

/// The per-worker feeding loop and its state.
pub(super) struct Driver<'a> {
    ctx: &'a Context,
    source: Box<dyn Source>,
    source_name: String,
    dead: Box<dyn DeadLetterSink>,
    /// Each partition's clock ([`crate::core::clock`]): its watermark and held records.
    pub(super) marks: BTreeMap<PartitionId, Clock>,
    /// Verdicts on held records, reused between batches.
    decided: Vec<Decided>,
    /// Views accepted and not yet added to the counter.
    views: u64,
    batch: Batch,
    panes: PaneCounts,
    /// Dead letters written and not yet flushed: the sink is served in the
    /// background and flushed (which blocks) only when the source finishes.
    dead_dirty: bool,
    last_dead_flush: Instant,
    /// Checkpointing state, when the job checkpoints.
    pub(super) checkpointer: Option<Checkpointer>,
    /// After a restore: the input for panes before the checkpoint time, and that time.
    /// Dropped once every partition's watermark has passed it.
    pub(super) carry: Option<(InputSession<Pane, ContentId, i64>, Pane)>,
    /// The model's inputs, when the job maintains the model.
    pub(super) model: Option<ModelFeed>,
    /// One past the latest pane fed; once the source has finished, the
    /// frontier passing it means every event is through the dataflow.
    fed_until: Pane,
    source_done: bool,
    /// Partitions the source said have finished.
    pub(super) finished: BTreeSet<PartitionId>,
}

impl<'a> Driver<'a> {
    pub(super) fn new(
        ctx: &'a Context,
        source: Box<dyn Source>,
        source_name: String,
        dead: Box<dyn DeadLetterSink>,
    ) -> Self {
        let marks = source
            .partitions()
            .into_iter()
            .map(|p| (p, PartitionClock::new(ctx.clock, ctx.window)))
            .collect();
        Driver {
            ctx,
            source,
            source_name,
            dead,
            marks,
            decided: Vec::new(),
            views: 0,
            batch: Batch::default(),
            panes: PaneCounts::default(),
            dead_dirty: false,
            last_dead_flush: Instant::now(),
            checkpointer: None,
            carry: None,
            model: None,
            fed_until: 0,
            source_done: false,
            finished: BTreeSet::new(),
        }
    }

    /// Feeds the dataflow until the source is done and the frontier is empty
    /// (returns `false`), or until a stop is requested (returns `true`).
    pub(super) fn drive(
        &mut self,
        worker: &mut Worker,
        input: Views,
        probe: &ProbeHandle<Pane>,
    ) -> Result<bool> {
        let mut input = Some(input);
        let started = Instant::now();
        // On a stop request: the id of the final checkpoint and when we began waiting for it.
        let mut stopping: Option<(u64, Instant)> = None;
        let steps = Stepping(self.ctx.stats.steps.register(worker.index()));
        loop {
            steps.0.store(now_ms(), Ordering::Relaxed);
            if let Some((id, since)) = stopping {
                // Before faults: a peer that stopped too may already have
                // gone once the final checkpoint was complete.
                if self.final_checkpoint_done(id, since)? {
                    return Ok(true);
                }
            }
            if let Some(fault) = self.ctx.fault.get() {
                // While stopping, a peer that went away is no reason to give
                // up the final checkpoint: its parts may all be written, and
                // the peer-loss hook (job::cluster) is waiting to see it
                // complete; returning the fault would exit 69 before it does.
                if stopping.is_none() || !fault.is_peer_gone() {
                    return Err(fault);
                }
            }
            self.stall_for_test(worker.index(), started);
            self.serve_dead_letters()?;
            let frontier = self.observe(worker.index(), probe);
            if stopping.is_none() && self.ctx.stop.load(Ordering::Relaxed) {
                match self.final_checkpoint(frontier)? {
                    Some(id) => stopping = Some((id, Instant::now())),
                    None => return Ok(true),
                }
            }
            if let Some((id, since)) = stopping {
                stopping = Some((self.follow_peers(id, frontier)?, since));
                // Keep stepping (the frontier must pass the checkpoint time) until it is complete.
                worker.step_or_park(Some(Duration::from_millis(5)));
                continue;
            }
            self.checkpoint_if_due(frontier)?;
            let idle = match input.as_mut() {
                Some(session) => {
                    let (idle, finished) = self.read(worker.index(), session, probe, started)?;
                    if finished {
                        // Closing the input lets the frontier run out.
                        input = None;
                    }
                    idle
                }
                None => match self.drain_model(probe) {
                    Some(idle) => idle,
                    // The writer completes what is pending once the workers are done.
                    None if frontier.is_none() => return Ok(false),
                    None => false,
                },
            };
            let park = if idle { 1 } else { 0 };
            worker.step_or_park(Some(Duration::from_millis(park)));
        }
    }

    /// Serves the dead-letter sink in the background, at most every 200 ms.
    fn serve_dead_letters(&mut self) -> Result<()> {
        if self.dead_dirty && self.last_dead_flush.elapsed() >= Duration::from_millis(200) {
            self.dead.poll()?;
            self.last_dead_flush = Instant::now();
        }
        Ok(())
    }

    /// Reads the probe's frontier and publishes what it says (caught up,
    /// frontier time, the checkpoint writer's view); returns it.
    fn observe(&mut self, worker: usize, probe: &ProbeHandle<Pane>) -> Option<Pane> {
        let frontier = probe.with_frontier(|f| f.first().copied());
        let stats = &self.ctx.stats;
        if self.source_done && !probe.less_than(&self.fed_until) {
            // What follows is only the windows running out.
            self.source_done = false;
            stats.caught_up_ms.fetch_max(now_ms(), Ordering::Relaxed);
        }
        if let Some(f) = frontier {
            let ms = self.ctx.window.pane_start(f);
            stats.frontier_ms.store(ms, Ordering::Relaxed);
        }
        if let (Some(cp), 0) = (self.checkpointer.as_ref(), worker) {
            cp.writer().set_frontier(frontier);
        }
        frontier
    }

    /// On a stop request: flushes the dead letters and hands in the final
    /// checkpoint's part; its id, or `None` when the job does not checkpoint.
    fn final_checkpoint(&mut self, frontier: Option<Pane>) -> Result<Option<u64>> {
        self.dead.flush()?;
        let Some(cp) = self.checkpointer.as_ref() else {
            return Ok(None);
        };
        let id = cp.final_id(now_ms() as u64);
        tracing::info!(checkpoint = id, "stop requested: taking a final checkpoint");
        self.take_final(id, frontier)?;
        Ok(Some(id))
    }

    /// Hands in this worker's part of final checkpoint `id` (retried until
    /// the stop bound) and waits for it.
    fn take_final(&mut self, id: u64, frontier: Option<Pane>) -> Result<()> {
        let Some(cp) = self.checkpointer.as_mut() else {
            return Ok(());
        };
        let limit = Some(self.ctx.job.checkpoint.stop_limit());
        let source = &*self.source;
        Self::checkpoint(
            &self.ctx.stats,
            cp,
            source,
            &self.marks,
            id,
            frontier,
            limit,
        )?;
        cp.writer().wait_for(id);
        Ok(())
    }

    /// When a peer (in this process or another) stopped at a newer final
    /// checkpoint than `id`: takes this worker's part of it too, so the
    /// cluster completes one final checkpoint. Returns the id to wait for.
    fn follow_peers(&mut self, id: u64, frontier: Option<Pane>) -> Result<u64> {
        let Some(cp) = self.checkpointer.as_ref() else {
            return Ok(id);
        };
        let StopStep::Follow(newer) = cp.stop_step(id) else {
            return Ok(id);
        };
        tracing::info!(
            checkpoint = newer,
            instead_of = id,
            "a peer stopped at a newer final checkpoint; taking a part of it too"
        );
        self.take_final(newer, frontier)?;
        Ok(newer)
    }

    /// True once the final checkpoint `id` is complete (and no peer stopped
    /// at a newer one); an error once it failed or the stop bound passed.
    fn final_checkpoint_done(&self, id: u64, since: Instant) -> Result<bool> {
        let Some(cp) = self.checkpointer.as_ref() else {
            return Ok(true);
        };
        if cp.stop_step(id) == StopStep::Done {
            tracing::info!(checkpoint = id, "final checkpoint complete; stopping");
            return Ok(true);
        }
        let limit = self.ctx.job.checkpoint.stop_limit();
        if cp.writer().failed(id) || since.elapsed() > limit {
            return Err(final_checkpoint_failed(id, limit));
        }
        Ok(false)
    }

    /// Takes this worker's part of a checkpoint when one is due.
    fn checkpoint_if_due(&mut self, frontier: Option<Pane>) -> Result<()> {
        let Some(cp) = self.checkpointer.as_mut() else {
            return Ok(());
        };
        if let (Some(id), Some(f)) = (cp.due(now_ms() as u64), frontier) {
            // Letters of records before the checkpoint's offsets are
            // acknowledged (or spooled) before the offsets are recorded.
            self.dead.flush()?;
            let source = &*self.source;
            Self::checkpoint(&self.ctx.stats, cp, source, &self.marks, id, Some(f), None)?;
        }
        Ok(())
    }

    /// Reads one batch into the input unless the dataflow trails too far,
    /// then advances the input; returns (idle, the source has finished).
    fn read(
        &mut self,
        worker: usize,
        session: &mut Views,
        probe: &ProbeHandle<Pane>,
        started: Instant,
    ) -> Result<(bool, bool)> {
        let max_lead = self.ctx.job.window.max_lead_panes;
        if probe.less_than(&session.time().saturating_sub(max_lead)) {
            // Wait for the slowest worker; parking wakes on its messages.
            return Ok((true, false));
        }
        self.batch.clear();
        let mut idle = false;
        match self
            .source
            .poll(&mut self.batch, self.ctx.job.source.batch)?
        {
            Poll::Data => self.ingest(session)?,
            Poll::Idle => idle = true,
            Poll::Finished(p) => self.finish_partition(session, p)?,
        }
        // Every partition with a clock has finished, and so has every one
        // the source knows: one found while running that has delivered
        // nothing yet has no clock, and must not be left unread.
        if self.marks.is_empty() && all_finished(&self.source.partitions(), &self.finished) {
            self.source_finished(session, started)?;
            return Ok((idle, true));
        }
        self.advance(worker, session, started)?;
        Ok((idle, false))
    }

    /// Every partition is done: what is left is the windows running out.
    fn source_finished(&mut self, session: &Views, started: Instant) -> Result<()> {
        self.dead.flush()?;
        let until = *session.time();
        self.fed_until = self.fed_until.max(until);
        self.source_done = true;
        self.carry = None;
        if let Some(m) = self.model.as_mut() {
            m.carry = None;
            // Walk the model's inputs through the score window
            // pane by pane, so what leaves it leaves in order.
            m.drain_until = Some(until + m.spec.score_panes + 1);
        }
        tracing::debug!(elapsed = ?started.elapsed(), "source finished");
        Ok(())
    }

    /// Advances the input to the low watermark of the partitions that are
    /// not idle, enters catalog changes, and drops the carry input once
    /// every partition has passed the checkpoint time.
    fn advance(&mut self, worker: usize, session: &mut Views, started: Instant) -> Result<()> {
        // Idle partitions stop holding the input back; if all are idle, nothing moves.
        self.start_idle_clocks(session)?;
        let low = self
            .marks
            .iter()
            .filter(|(p, _)| !self.source.is_idle(**p))
            .map(|(_, w)| w.pane())
            .min()
            .unwrap_or(*session.time());
        // Read the partition that trails next, so a worker's partitions advance together.
        if let Some((p, _)) = self.marks.iter().min_by_key(|(_, w)| w.pane()) {
            self.source.focus(*p);
        }
        self.catalog_changes(*session.time())?;
        if low > *session.time() {
            session.advance_to(low);
            if let Some(m) = self.model.as_mut() {
                m.advance(low);
            }
            if let Ok(mut w) = self.ctx.stats.worker_watermarks.lock() {
                w.insert(worker, self.ctx.window.pane_start(low));
            }
        }
        session.flush();
        if let Some(m) = self.model.as_mut() {
            m.flush();
        }
        if let Some((carry, time)) = self.carry.as_mut() {
            carry.flush();
            if self.marks.values().all(|w| w.pane() >= *time) {
                self.carry = None;
                if let Some(m) = self.model.as_mut() {
                    m.carry = None;
                }
                tracing::info!(after = ?started.elapsed(), "every partition is past the checkpoint time");
            }
        }
        Ok(())
    }

    /// After the source: steps the model's inputs through the score window
    /// one pane per step; `None` when there is no model (left) to drain.
    fn drain_model(&mut self, probe: &ProbeHandle<Pane>) -> Option<bool> {
        let m = self.model.as_mut()?;
        let time = *m.facts.time();
        match m.drain_until {
            Some(end) if time < end => {
                // As far ahead as the sources may lead: the model's stages
                // go a block of panes at a time (`model.block_panes`).
                let lead = self.ctx.job.window.max_lead_panes;
                if probe.less_than(&time.saturating_sub(lead)) {
                    return Some(true);
                }
                // One pane per step: larger steps measured slower.
                m.advance(time + 1);
                m.flush();
            }
            _ => self.model = None,
        }
        Some(false)
    }

    /// The [`Context::stall_after`] test hook.
    fn stall_for_test(&self, worker: usize, started: Instant) {
        if let Some(after) = self.ctx.stall_after {
            if worker == 0 && started.elapsed() >= after {
                tracing::warn!("test hook: worker 0 stalls");
                while !self.ctx.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Hands this worker's part of checkpoint `id` to the writer; a part
    /// that cannot be queued skips this checkpoint (counted), it does not
    /// stop the job. `retry_for`: how long the writer may retry it.
    fn checkpoint(
        stats: &Stats,
        cp: &mut Checkpointer,
        source: &dyn Source,
        marks: &BTreeMap<PartitionId, Clock>,
        id: u64,
        frontier: Option<Pane>,
        retry_for: Option<Duration>,
    ) -> Result<()> {
        let Some(frontier) = frontier else {
            return Ok(());
        };
        let positions = source.positions();
        let clocks: BTreeMap<PartitionId, ClockState> =
            marks.iter().map(|(p, c)| (*p, clock_state(c))).collect();
        if let Err(e) = cp.take(id, frontier, &positions, &clocks, retry_for) {
            Stats::add(&stats.checkpoint_failures, 1);
            tracing::warn!(checkpoint = id, error = %e, "checkpoint part not queued; skipping this checkpoint");
        }
        Ok(())
    }

    /// Enters catalog changes that arrived since the last call (worker 0):
    /// at the pane of their `effective_at`, or now if that has passed.
    fn catalog_changes(&mut self, now: Pane) -> Result<()> {
        let Some(m) = self.model.as_mut() else {
            return Ok(());
        };
        let Some(feed) = m.feed.as_mut() else {
            return Ok(());
        };
        let (changes, refused) = feed.poll();
        for c in changes {
            let at = c
                .effective_at
                .and_then(|t| self.ctx.window.pane_of(t))
                .map_or(now, |p| p.max(now));
            if let Some(t) = &c.before {
                m.catalog.update_at(crate::core::model::entry(t), at, -1);
            }
            if let Some(t) = &c.after {
                m.catalog.update_at(crate::core::model::entry(t), at, 1);
            }
            Stats::add(&self.ctx.stats.catalog_changes, 1);
        }
        for r in refused {
            let letter = DeadLetter {
                reason: "catalog".into(),
                detail: r.reason,
                source: r.source,
                partition: r.partition,
                position: r.position,
                raw: r.raw,
            };
            self.dead.write(&letter, letter.raw.as_bytes())?;
            Stats::add(&self.ctx.stats.dead_lettered, 1);
            Stats::add(&self.ctx.stats.catalog_refused, 1);
            self.dead_dirty = true;
        }
        Ok(())
    }
}

/// The error of a stop whose final checkpoint was not written: the
/// previous checkpoint stands, and the exit status says so.
fn final_checkpoint_failed(id: u64, limit: Duration) -> Error {
    Error::External {
        system: "object store",
        message: format!(
            "the final checkpoint {id} was not written within checkpoint.stop-timeout \
             ({limit:?}); the previous checkpoint stands and a restart resumes from it"
        ),
        retryable: true,
    }
}

/// A worker's step time cell; marks the worker finished however its loop ends.
struct Stepping(Arc<std::sync::atomic::AtomicI64>);

impl Drop for Stepping {
    fn drop(&mut self) {
        crate::core::stats::Steps::finish(&self.0);
    }
}
