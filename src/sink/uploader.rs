//! Store I/O off the worker threads, with retries.
//!
//! An [`Uploader`] owns a thread that runs store jobs in submission order.
//! A job that fails with a retryable error (store unreachable, throttled,
//! 5xx) is retried with exponential back-off, forever: an hour is never
//! dropped, and while its job waits, the operator that submitted it holds
//! the hour's capability, so the dataflow frontier stops there and the
//! sources stop reading once they are `max-lead-panes` ahead. That is the
//! back-pressure, and it bounds memory. A job that fails for good (access
//! denied, a bug) is reported and stops the job.
//!
//! Dropping an uploader (the job stops) lets it finish its queue for up to
//! [`GRACE`], unless the store is failing (a job is waiting to retry): then
//! it gives up what is left at once, since a store outage must not keep a
//! stopping process alive. An hour given up has no `_SUCCESS`, so it is not
//! published, and a restart from the last checkpoint writes it again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use timely::scheduling::SyncActivator;

use super::store::ObjectStore;
use crate::core::backoff::Backoff;
use crate::core::error::Result;
use crate::core::stats::Stats;

/// A unit of store work; it may run more than once.
pub type Job<R> = Box<dyn Fn(&dyn ObjectStore) -> Result<R> + Send>;

/// Runs store jobs on a thread of its own.
pub struct Uploader<R: Send + 'static> {
    jobs: Option<mpsc::Sender<(u64, Job<R>)>>,
    done: mpsc::Receiver<(u64, Result<R>)>,
    next: u64,
    thread: Option<JoinHandle<()>>,
    abandon: Arc<AtomicBool>,
    /// Set while a job waits to retry after a failure.
    failing: Arc<AtomicBool>,
    /// Jobs submitted whose result has not been sent back yet.
    unfinished: Arc<AtomicU64>,
    stats: Arc<Stats>,
}

/// How long a dropped uploader may go on with its queue.
pub const GRACE: Duration = Duration::from_secs(10);

/// First wait before retrying a failed job.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl<R: Send + 'static> Uploader<R> {
    /// Starts the thread; `activator` wakes the submitting operator when a job ends.
    pub fn spawn(
        name: &str,
        store: Arc<dyn ObjectStore>,
        activator: SyncActivator,
        stats: Arc<Stats>,
    ) -> Uploader<R> {
        let (jobs, inbox) = mpsc::channel::<(u64, Job<R>)>();
        let (outbox, done) = mpsc::channel();
        let abandon = Arc::new(AtomicBool::new(false));
        let given_up = abandon.clone();
        let failing = Arc::new(AtomicBool::new(false));
        let in_retry = failing.clone();
        let unfinished = Arc::new(AtomicU64::new(0));
        let left = unfinished.clone();
        let counters = stats.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Ok((id, job)) = inbox.recv() {
                    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
                    let result = loop {
                        if given_up.load(Ordering::Acquire) {
                            return;
                        }
                        match job(&*store) {
                            Err(e) if e.retryable() => {
                                in_retry.store(true, Ordering::Release);
                                stats.store_retries.fetch_add(1, Ordering::Relaxed);
                                let wait = backoff.next_wait();
                                tracing::warn!(error = %e, retry_in = ?wait, store = %store.describe(), "store operation failed; retrying");
                                sleep_unless(&given_up, wait);
                            }
                            other => break other,
                        }
                    };
                    in_retry.store(false, Ordering::Release);
                    left.fetch_sub(1, Ordering::AcqRel);
                    if outbox.send((id, result)).is_err() {
                        break;
                    }
                    let _ = activator.activate();
                }
            })
            .ok();
        Uploader {
            jobs: Some(jobs),
            done,
            next: 0,
            thread,
            abandon,
            failing,
            unfinished,
            stats: counters,
        }
    }

    /// Queues a job; its result comes back from [`Uploader::completed`] under the returned id.
    pub fn submit(&mut self, job: Job<R>) -> u64 {
        let id = self.next;
        self.next += 1;
        self.unfinished.fetch_add(1, Ordering::AcqRel);
        if let Some(tx) = &self.jobs {
            if tx.send((id, job)).is_err() {
                tracing::error!("uploader thread is gone");
            }
        }
        id
    }

    /// Results of finished jobs, in completion order.
    pub fn completed(&self) -> Vec<(u64, Result<R>)> {
        self.done.try_iter().collect()
    }
}

/// Sleeps for `d`, waking early once `flag` is set.
fn sleep_unless(flag: &AtomicBool, d: Duration) {
    let until = std::time::Instant::now() + d;
    while !flag.load(Ordering::Acquire) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

impl<R: Send + 'static> Drop for Uploader<R> {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what it has and exit.
        self.jobs = None;
        let Some(t) = self.thread.take() else { return };
        let began = std::time::Instant::now();
        // The thread holds the results' sender: its end disconnects them,
        // which wakes this wait at once (results still coming are dropped,
        // as nobody asks for them any more).
        let mut ended = false;
        while !ended && began.elapsed() < GRACE && !self.failing.load(Ordering::Acquire) {
            ended = matches!(
                self.done.recv_timeout(Duration::from_millis(20)),
                Err(mpsc::RecvTimeoutError::Disconnected)
            );
        }
        if !ended {
            tracing::warn!(
                grace = ?GRACE,
                failing = self.failing.load(Ordering::Acquire),
                "store jobs still queued at stop; giving them up (their hours are not published)"
            );
            // The call in progress ends within the store's timeouts; the
            // thread is left to end on its own.
            self.abandon.store(true, Ordering::Release);
            let left = self.unfinished.load(Ordering::Acquire);
            self.stats
                .store_jobs_abandoned
                .fetch_add(left, Ordering::Relaxed);
            return;
        }
        let _ = t.join();
    }
}
