//! Checkpoint I/O on a thread of its own, never on a dataflow worker.
//!
//! Workers encode their parts and hand them to the process's [`Writer`];
//! it writes them and, in the process of worker 0, polls for checkpoints
//! whose parts all exist and whose time the dataflow frontier has passed,
//! writes their manifests and prunes old ones. A store that is down or
//! slow costs checkpoints, never the job: a part that cannot be written,
//! or that finds the writer still busy with earlier ones, is counted and
//! skipped (the next checkpoint covers it), and a manifest that cannot be
//! written is tried again at the next poll.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Checkpoints, PartMeta};
use crate::core::backoff::Backoff;
use crate::core::error::{Error, Result};
use crate::core::stats::Stats;
use crate::core::time::Pane;
use crate::sink::store::ObjectStore;

/// How often pending checkpoints are polled for completion.
const POLL: Duration = Duration::from_millis(250);
/// Parts waiting to be written, per process; more are skipped.
const QUEUE: usize = 8;
/// Checkpoints waiting for completion; older ones are dropped (a newer
/// one covers them).
const MAX_PENDING: usize = 16;
/// How long a stopping process whose final checkpoint completed with a
/// peer's periodic part looks for that peer's newer stop before leaving.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A part to write.
struct Part {
    id: u64,
    bytes: Vec<u8>,
    meta: PartMeta,
    /// Retry a failed write until then (the final checkpoint of a stop);
    /// `None`: one attempt, the next checkpoint covers a failure.
    retry_until: Option<Instant>,
}

/// What the workers and the writer thread share.
#[derive(Default)]
struct State {
    /// Worker 0's output frontier; `u64::MAX` once it is empty.
    frontier: AtomicU64,
    /// One more than the newest checkpoint known to be complete (0: none).
    completed: AtomicU64,
    /// One more than the newest checkpoint a part of which failed here.
    failed: AtomicU64,
    /// One more than the checkpoint a stopping worker waits for.
    awaited: AtomicU64,
    /// One more than the final checkpoint id the process's workers proposed.
    proposed: AtomicU64,
    /// One more than the newest checkpoint a stopping peer took a part of
    /// (seen in the store) beyond the awaited one.
    peer_stop: AtomicU64,
    /// One more than the checkpoint a stopping worker may leave on: it is
    /// complete and, looked at after (for [`STOP_GRACE`] unless every part
    /// of it is a stop's), no peer had stopped at a newer one.
    released: AtomicU64,
    /// Workers of the cluster (from the parts this process submits): stop
    /// parts of another cluster's shape are not followed.
    peers: AtomicUsize,
    /// Set to make the thread give up what it is doing.
    abandon: AtomicBool,
}

/// The process's checkpoint writer.
pub struct Writer {
    parts: Mutex<Option<SyncSender<Part>>>,
    state: Arc<State>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    done: Mutex<mpsc::Receiver<()>>,
}

impl Writer {
    /// Starts the writer of `job`'s checkpoints in `store`, keeping the newest `keep`.
    pub fn spawn(
        store: Arc<dyn ObjectStore>,
        job: &str,
        keep: usize,
        stats: Arc<Stats>,
    ) -> Result<Arc<Writer>> {
        let (tx, rx) = mpsc::sync_channel::<Part>(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let state = Arc::new(State::default());
        let mut thread = Thread {
            store,
            job: job.to_string(),
            keep,
            stats,
            state: state.clone(),
            pending: BTreeMap::new(),
            failing: false,
            complete_seen: None,
        };
        let handle = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || {
                thread.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::io("starting the checkpoint writer thread", e))?;
        Ok(Arc::new(Writer {
            parts: Mutex::new(Some(tx)),
            state,
            thread: Mutex::new(Some(handle)),
            done: Mutex::new(done),
        }))
    }

    /// Queues a worker's part of checkpoint `id`; an error if the writer is
    /// still busy with earlier parts (the store is slow or down). A stop's
    /// part (`retry_for`) waits for room until then instead: following a
    /// peer doubles the final parts, and a dropped one would leave the
    /// cluster waiting out the stop bound; one that cannot be queued marks
    /// the checkpoint failed, so the stop ends at once.
    pub fn submit(
        &self,
        id: u64,
        bytes: Vec<u8>,
        meta: PartMeta,
        retry_for: Option<Duration>,
    ) -> Result<()> {
        self.state.peers.store(meta.peers, Ordering::Release);
        let mut part = Part {
            id,
            bytes,
            meta,
            retry_until: retry_for.map(|d| Instant::now() + d),
        };
        let busy = |what: &str| Error::External {
            system: "object store",
            message: format!("checkpoint {id} skipped: {what}"),
            retryable: true,
        };
        loop {
            let sent = match self
                .parts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                Some(tx) => tx.try_send(part),
                None => return Err(busy("the writer has stopped")),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(p)) if p.retry_until.is_some_and(|u| Instant::now() < u) => {
                    part = p;
                    std::thread::sleep(POLL / 25);
                }
                Err(TrySendError::Full(p)) => {
                    if p.retry_until.is_some() {
                        self.state.failed.fetch_max(id + 1, Ordering::AcqRel);
                    }
                    return Err(busy(
                        "the writer is still busy with earlier parts (the store is slow or down)",
                    ));
                }
                Err(TrySendError::Disconnected(_)) => return Err(busy("the writer has stopped")),
            }
        }
    }

    /// Worker 0 reports its output frontier (`None`: empty, the dataflow is done).
    pub fn set_frontier(&self, frontier: Option<Pane>) {
        self.state
            .frontier
            .store(frontier.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// A stopping worker waits for checkpoint `id`: the writer polls for it.
    pub fn wait_for(&self, id: u64) {
        self.state.awaited.fetch_max(id + 1, Ordering::AcqRel);
    }

    /// A worker proposes `id` for its final checkpoint; returns the newest
    /// proposed in this process, which all its workers then use.
    pub fn propose_final(&self, id: u64) -> u64 {
        self.state
            .proposed
            .fetch_max(id + 1, Ordering::AcqRel)
            .max(id + 1)
            - 1
    }

    /// A final checkpoint newer than `id` that a worker of this process
    /// proposed or a peer process took a part of.
    pub fn newer_stop(&self, id: u64) -> Option<u64> {
        let s = &self.state;
        let newest = s
            .proposed
            .load(Ordering::Acquire)
            .max(s.peer_stop.load(Ordering::Acquire));
        (newest > id + 1).then(|| newest - 1)
    }

    /// True once a stopping worker whose final checkpoint is `id` may leave.
    pub fn is_released(&self, id: u64) -> bool {
        self.state.released.load(Ordering::Acquire) > id
    }

    /// Waits up to `limit` for the checkpoint a stopping worker awaits (see
    /// [`Writer::wait_for`]) to be complete; false if none is awaited or it
    /// did not complete in time. Called once a peer has gone: no newer
    /// checkpoint can complete then, so there is no peer to follow and
    /// completion is enough.
    pub fn awaited_completes_within(&self, limit: Duration) -> bool {
        let began = Instant::now();
        loop {
            let awaited = self.state.awaited.load(Ordering::Acquire);
            if awaited > 0 && self.state.completed.load(Ordering::Acquire) >= awaited {
                return true;
            }
            if began.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(POLL / 5);
        }
    }

    /// True once checkpoint `id` (or a newer one) is complete.
    pub fn is_complete(&self, id: u64) -> bool {
        self.state.completed.load(Ordering::Acquire) > id
    }

    /// True if a part of checkpoint `id` (or a newer one) failed in this process.
    pub fn failed(&self, id: u64) -> bool {
        self.state.failed.load(Ordering::Acquire) > id
    }

    /// Writes what is queued and completes what can be, for at most
    /// `limit`; then gives up on the rest. Called once the workers are done.
    pub fn finish(&self, limit: Duration) {
        self.parts.lock().unwrap_or_else(|e| e.into_inner()).take();
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.recv_timeout(limit).is_err() {
            tracing::warn!(
                ?limit,
                "the checkpoint writer did not finish in time; giving up on what it holds"
            );
            self.state.abandon.store(true, Ordering::Release);
            // The call in progress ends within the store's own timeouts.
            let _ = done.recv_timeout(Duration::from_secs(30));
        }
        if let Some(h) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.state.abandon.store(true, Ordering::Release);
        self.parts.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The writer thread's own state.
struct Thread {
    store: Arc<dyn ObjectStore>,
    job: String,
    keep: usize,
    stats: Arc<Stats>,
    state: Arc<State>,
    /// Checkpoints whose worker-0 part this process wrote: id → workers.
    pending: BTreeMap<u64, usize>,
    /// True while polls fail: log the first failure and the recovery only.
    failing: bool,
    /// While stopping: the awaited checkpoint (plus one) seen complete, and when.
    complete_seen: Option<(u64, Instant)>,
}

impl Thread {
    fn run(&mut self, rx: mpsc::Receiver<Part>) {
        let mut last_poll = Instant::now();
        loop {
            if self.state.abandon.load(Ordering::Acquire) {
                return;
            }
            match rx.recv_timeout(POLL) {
                Ok(part) => self.write(part),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The workers are done: one last completion attempt.
                    self.poll();
                    return;
                }
            }
            if last_poll.elapsed() >= POLL {
                last_poll = Instant::now();
                self.poll();
            }
        }
    }

    fn checkpoints(&self) -> Checkpoints<'_> {
        Checkpoints::new(&*self.store, &self.job)
    }

    fn write(&mut self, part: Part) {
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let result = loop {
            match self
                .checkpoints()
                .write_part(part.id, &part.bytes, &part.meta)
            {
                Err(e)
                    if e.retryable()
                        && part
                            .retry_until
                            .is_some_and(|u| Instant::now() + backoff.peek() < u)
                        && !self.state.abandon.load(Ordering::Acquire) =>
                {
                    let wait = backoff.next_wait();
                    tracing::warn!(checkpoint = part.id, error = %e, retry_in = ?wait, "checkpoint part not written; retrying");
                    std::thread::sleep(wait);
                }
                other => break other,
            }
        };
        let s = &self.stats;
        match result {
            Ok(()) => {
                let took = started.elapsed();
                tracing::info!(
                    checkpoint = part.id,
                    worker = part.meta.worker,
                    entries = part.meta.entries,
                    bytes = part.meta.bytes,
                    ?took,
                    "checkpoint part written"
                );
                Stats::add(&s.checkpoints, 1);
                s.checkpoint_micros
                    .store(took.as_micros() as u64, Ordering::Relaxed);
                s.checkpoint_bytes.store(part.meta.bytes, Ordering::Relaxed);
                s.checkpoint_last_ms
                    .store(crate::core::time::now_ms(), Ordering::Relaxed);
                if part.meta.worker == 0 {
                    self.pending.insert(part.id, part.meta.peers);
                    while self.pending.len() > MAX_PENDING {
                        self.pending.pop_first();
                    }
                }
            }
            Err(e) => {
                Stats::add(&s.checkpoint_failures, 1);
                self.state.failed.fetch_max(part.id + 1, Ordering::AcqRel);
                tracing::warn!(checkpoint = part.id, worker = part.meta.worker, error = %e, "checkpoint part not written; the next checkpoint covers it");
            }
        }
    }

    /// Completes the newest pending checkpoint that can be, notices
    /// completions by other processes that a stopping worker waits for,
    /// then looks for peers that stopped at a newer one.
    fn poll(&mut self) {
        let result = self
            .complete()
            .and_then(|()| self.notice_awaited())
            .and_then(|()| self.notice_peer_stops());
        match (result, self.failing) {
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!("checkpoint store reachable again");
            }
            (Err(e), false) => {
                self.failing = true;
                Stats::add(&self.stats.checkpoint_store_errors, 1);
                tracing::warn!(error = %e, "completing checkpoints failed; retrying every poll");
            }
            (Err(_), true) => Stats::add(&self.stats.checkpoint_store_errors, 1),
            (Ok(()), false) => {}
        }
    }

    fn complete(&mut self) -> Result<()> {
        let frontier = match self.state.frontier.load(Ordering::Acquire) {
            u64::MAX => None,
            f => Some(f),
        };
        // A stopping process completes nothing older than its final
        // checkpoint: peers that stopped at an older one must follow it
        // rather than leave on theirs while this one waits.
        let floor = self.state.awaited.load(Ordering::Acquire).saturating_sub(1);
        let ids: Vec<(u64, usize)> = self
            .pending
            .range(floor..)
            .rev()
            .map(|(i, p)| (*i, *p))
            .collect();
        for (id, peers) in ids {
            if let Some(m) = self.checkpoints().try_complete(id, peers, frontier)? {
                tracing::info!(checkpoint = id, time = m.time, "checkpoint complete");
                self.state.completed.fetch_max(id + 1, Ordering::AcqRel);
                Stats::add(&self.stats.checkpoints_completed, 1);
                self.stats
                    .checkpoint_completed_ms
                    .store(crate::core::time::now_ms(), Ordering::Relaxed);
                // Older pending ones can never be newer than this one.
                self.pending.retain(|p, _| *p > id);
                if let Err(e) = self.checkpoints().prune(self.keep) {
                    Stats::add(&self.stats.checkpoint_store_errors, 1);
                    tracing::warn!(error = %e, "pruning old checkpoints failed; the next completion tries again");
                }
                break;
            }
        }
        Ok(())
    }

    fn notice_awaited(&mut self) -> Result<()> {
        let awaited = self.state.awaited.load(Ordering::Acquire);
        if awaited > self.state.completed.load(Ordering::Acquire)
            && self.checkpoints().is_complete(awaited - 1)?
        {
            // Completed by worker 0's process, which counts it.
            self.state.completed.fetch_max(awaited, Ordering::AcqRel);
        }
        Ok(())
    }

    /// While a worker of this process stops: records the newest final
    /// checkpoint a peer took a part of, and releases the stopping workers
    /// once theirs is complete and none is newer (at once if every part of
    /// it is a stop's, else after [`STOP_GRACE`]). Looking after noticing
    /// the completion means a peer that stopped at a newer id in the
    /// meantime is followed, not left waiting for a part that never comes.
    fn notice_peer_stops(&mut self) -> Result<()> {
        let s = &self.state;
        let awaited = s.awaited.load(Ordering::Acquire);
        if awaited == 0 || s.released.load(Ordering::Acquire) >= awaited {
            return Ok(());
        }
        let peers = s.peers.load(Ordering::Acquire);
        if let Some(id) = self.checkpoints().newest_stop_after(awaited - 1, peers)? {
            s.peer_stop.fetch_max(id + 1, Ordering::AcqRel);
        }
        let newest = s
            .peer_stop
            .load(Ordering::Acquire)
            .max(s.proposed.load(Ordering::Acquire));
        if s.completed.load(Ordering::Acquire) < awaited || newest > awaited {
            self.complete_seen = None;
            return Ok(());
        }
        // A checkpoint made of stop parts only has every process stopping
        // with it. One with a peer's periodic part may be followed by that
        // peer's stop at a newer id a moment later (its signal came just
        // after the boundary): wait a little for it before leaving.
        let seen = match self.complete_seen {
            Some((a, at)) if a == awaited => at,
            _ => self.complete_seen.insert((awaited, Instant::now())).1,
        };
        let all_stopped = self
            .checkpoints()
            .manifest(awaited - 1)?
            .is_some_and(|m| m.parts.iter().all(|p| p.stop));
        if all_stopped || seen.elapsed() >= STOP_GRACE {
            s.released.fetch_max(awaited, Ordering::AcqRel);
        }
        Ok(())
    }
}
