//! Reading ahead: a source polled on a thread of its own, so that fetching
//! and decoding the next batches overlaps the worker's dataflow steps.
//!
//! The worker's loop is otherwise serial: while it steps the dataflow (or
//! waits for a slower worker's frontier) nothing is decoded, and while it
//! decodes nothing is stepped. The reader thread keeps at most `depth`
//! batches ready; what the worker sees is exactly what the source gave, in
//! the same order, with each batch's state taken right after it was read:
//! the positions a checkpoint records are those of the batches the worker
//! has taken, never of batches still waiting, and a partition is idle only
//! if it was idle after the last batch taken.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{all_finished, Batch, PartitionId, Poll, Source};
use crate::core::error::{Error, Result};

/// A source that can be moved to the reader thread.
pub type SendSource = Box<dyn Source + Send>;

/// One poll's outcome and the source's state right after it.
struct Read {
    batch: Batch,
    poll: Result<Poll>,
    /// The source's partitions now: a Kafka source finds new ones while running.
    partitions: Vec<PartitionId>,
    positions: BTreeMap<PartitionId, i64>,
    idle: BTreeSet<PartitionId>,
}

/// No partition to focus on.
const NO_FOCUS: u64 = u64::MAX;

/// A source read on its own thread, up to `depth` batches ahead.
pub struct ReadAhead {
    ready: Receiver<Read>,
    /// Emptied batches go back to the reader, so their buffers are reused.
    spent: SyncSender<Batch>,
    partitions: Vec<PartitionId>,
    positions: BTreeMap<PartitionId, i64>,
    idle: BTreeSet<PartitionId>,
    /// Set by the reader when it let the source go, every partition finished.
    ended: Arc<AtomicBool>,
    focus: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading `source` with up to `depth` (≥ 1) batches of `max` records ahead.
    pub fn start(source: SendSource, depth: usize, max: usize, name: String) -> Result<ReadAhead> {
        let depth = depth.max(1);
        let (ready_tx, ready) = sync_channel(depth);
        // One more than can be in flight: returning a batch never blocks.
        let (spent, spent_rx) = sync_channel(depth + 2);
        let partitions = source.partitions();
        let positions = source.positions();
        let focus = Arc::new(AtomicU64::new(NO_FOCUS));
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            ended: ended.clone(),
            source,
            ready: ready_tx,
            spent: spent_rx,
            focus: focus.clone(),
            stop: stop.clone(),
            max,
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || reader.run())
            .map_err(|e| Error::io("starting the source's reader thread", e))?;
        Ok(ReadAhead {
            ready,
            spent,
            partitions,
            positions,
            idle: BTreeSet::new(),
            ended,
            focus,
            stop,
            thread: Some(thread),
        })
    }
}

impl Source for ReadAhead {
    fn partitions(&self) -> Vec<PartitionId> {
        self.partitions.clone()
    }

    fn poll(&mut self, batch: &mut Batch, _max: usize) -> Result<Poll> {
        // Wait a little for the next batch, as a source polled in place does.
        let mut read = match self.ready.recv_timeout(Duration::from_millis(2)) {
            Ok(read) => read,
            Err(RecvTimeoutError::Timeout) => return Ok(Poll::Idle),
            // Every partition finished (and was handed on): idle from now on.
            Err(RecvTimeoutError::Disconnected) if self.ended.load(Ordering::Acquire) => {
                return Ok(Poll::Idle)
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Internal(
                    "the source's reader thread ended without an error (a bug)".into(),
                ))
            }
        };
        std::mem::swap(batch, &mut read.batch);
        self.positions = read.positions;
        self.idle = read.idle;
        self.partitions = read.partitions;
        // The reader may have gone (it stops after an error): no reuse then.
        let _ = self.spent.try_send(read.batch);
        read.poll
    }

    fn is_idle(&self, partition: PartitionId) -> bool {
        self.idle.contains(&partition)
    }

    fn focus(&mut self, partition: PartitionId) {
        self.focus.store(u64::from(partition), Ordering::Relaxed);
    }

    fn positions(&self) -> BTreeMap<PartitionId, i64> {
        self.positions.clone()
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Taking what is queued frees a reader blocked on a full queue; it
        // then sees the stop and drops its sender, which ends the loop.
        while self.ready.recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the source's reader thread panicked (a bug)");
            }
        }
    }
}

/// The reader thread's side.
struct Reader {
    source: SendSource,
    ready: SyncSender<Read>,
    spent: Receiver<Batch>,
    focus: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    max: usize,
}

impl Reader {
    /// Polls until the source fails, every partition has finished, or the
    /// worker goes; a full queue blocks it. Once every partition has
    /// finished the source is let go at once: a Kafka source's clients take
    /// a while to shut down, which then overlaps the windows running out
    /// instead of adding to the job's end.
    fn run(mut self) {
        let mut finished = BTreeSet::new();
        while !self.stop.load(Ordering::Relaxed) {
            if let Ok(p) = PartitionId::try_from(self.focus.load(Ordering::Relaxed)) {
                self.source.focus(p);
            }
            let mut batch = self.spent.try_recv().unwrap_or_default();
            batch.clear();
            let poll = self.source.poll(&mut batch, self.max);
            if let Ok(Poll::Finished(p)) = poll {
                finished.insert(p);
            }
            let failed = poll.is_err();
            let partitions = self.source.partitions();
            // A source that knows no partition yet is not done.
            let done = !partitions.is_empty() && all_finished(&partitions, &finished);
            let read = Read {
                positions: self.source.positions(),
                idle: (partitions.iter().copied())
                    .filter(|p| self.source.is_idle(*p))
                    .collect(),
                partitions,
                batch,
                poll,
            };
            if self.ready.send(read).is_err() || failed {
                return;
            }
            if done {
                self.ended.store(true, Ordering::Release);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three partitions taking turns, 7 records a poll; each reports its
    /// next position, and partition 2 is idle from its 5th batch on.
    #[derive(Default)]
    struct Turns {
        next: [u64; 3],
        polls: u64,
    }

    impl Source for Turns {
        fn partitions(&self) -> Vec<PartitionId> {
            vec![0, 1, 2]
        }
        fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
            let p = (self.polls % 3) as usize;
            self.polls += 1;
            if self.next[p] >= 700 {
                return Ok(if self.next[p] == 700 {
                    self.next[p] += 1;
                    Poll::Finished(p as PartitionId)
                } else {
                    Poll::Idle
                });
            }
            batch.partition = p as PartitionId;
            for _ in 0..max.min(7) {
                batch.read += 1;
                batch.rejects.push(crate::source::Reject {
                    partition: p as PartitionId,
                    position: self.next[p],
                    raw: Vec::new(),
                    error: crate::core::event::DecodeError::Malformed(String::new()),
                });
                self.next[p] += 1;
            }
            Ok(Poll::Data)
        }
        fn is_idle(&self, partition: PartitionId) -> bool {
            partition == 2 && self.next[2] >= 35
        }
        fn positions(&self) -> BTreeMap<PartitionId, i64> {
            (0..3)
                .map(|p| (p as PartitionId, self.next[p] as i64))
                .collect()
        }
    }

    /// Every record in order, and the positions and idle partitions after each batch.
    type Seen = (
        Vec<(u32, u64)>,
        Vec<(BTreeMap<PartitionId, i64>, Vec<bool>)>,
    );

    /// Everything a source gives, slowly (so a reader gets ahead).
    fn drain(source: &mut dyn Source) -> Seen {
        let (mut seen, mut states) = (Vec::new(), Vec::new());
        let mut live: BTreeSet<_> = source.partitions().into_iter().collect();
        let mut batch = Batch::default();
        while !live.is_empty() {
            batch.clear();
            match source.poll(&mut batch, 1000).expect("poll") {
                Poll::Data => {
                    let records = batch.rejects.iter().map(|r| (r.partition, r.position));
                    seen.extend(records);
                    let idle = (0..3).map(|p| source.is_idle(p)).collect();
                    states.push((source.positions(), idle));
                    std::thread::sleep(Duration::from_micros(200));
                }
                Poll::Idle => {}
                Poll::Finished(p) => {
                    live.remove(&p);
                }
            }
        }
        (seen, states)
    }

    #[test]
    fn reading_ahead_gives_what_the_source_gives_with_its_state_after_each_batch() {
        let plain = drain(&mut Turns::default());
        let mut ahead =
            ReadAhead::start(Box::new(Turns::default()), 3, 1000, "test".into()).expect("start");
        let read = drain(&mut ahead);
        assert_eq!(plain.0.len(), 2100);
        assert!(plain.1.iter().any(|(_, idle)| idle[2]));
        assert_eq!(plain, read);
    }

    /// [`Turns`] that says when it is dropped.
    struct Told(Turns, Arc<AtomicBool>);

    impl Drop for Told {
        fn drop(&mut self) {
            self.1.store(true, Ordering::Release);
        }
    }

    impl Source for Told {
        fn partitions(&self) -> Vec<PartitionId> {
            self.0.partitions()
        }
        fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
            self.0.poll(batch, max)
        }
        fn is_idle(&self, partition: PartitionId) -> bool {
            self.0.is_idle(partition)
        }
        fn positions(&self) -> BTreeMap<PartitionId, i64> {
            self.0.positions()
        }
    }

    #[test]
    fn a_source_is_let_go_once_every_partition_has_finished_and_polls_stay_idle() {
        let dropped = Arc::new(AtomicBool::new(false));
        let told = Told(Turns::default(), dropped.clone());
        let mut ahead = ReadAhead::start(Box::new(told), 3, 1000, "test".into()).expect("start");
        let read = drain(&mut ahead);
        assert_eq!(read.0.len(), 2100);
        let began = std::time::Instant::now();
        while !dropped.load(Ordering::Acquire) {
            assert!(
                began.elapsed() < Duration::from_secs(5),
                "the source was kept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut batch = Batch::default();
        for _ in 0..3 {
            assert_eq!(
                ahead.poll(&mut batch, 1000).expect("idle, not an error"),
                Poll::Idle
            );
        }
        assert_eq!(ahead.positions()[&2], 701); // as the source left it
    }

    /// Partition 0 has 3 records; partition 1 is found at the 2nd poll
    /// and has nothing until the 20th, then 2 records.
    #[derive(Default)]
    struct Growing {
        polls: u64,
        given: [u64; 2],
        finished: [bool; 2],
    }

    impl Source for Growing {
        fn partitions(&self) -> Vec<PartitionId> {
            if self.polls >= 2 {
                vec![0, 1]
            } else {
                vec![0]
            }
        }
        fn poll(&mut self, batch: &mut Batch, _max: usize) -> Result<Poll> {
            self.polls += 1;
            let p = usize::from(self.polls >= 20 || self.finished[0]);
            let (has, open) = ([3, 2][p], self.polls >= 20 || p == 0);
            if !open || self.finished[p] {
                return Ok(Poll::Idle);
            }
            if self.given[p] == has {
                self.finished[p] = true;
                return Ok(Poll::Finished(p as PartitionId));
            }
            batch.partition = p as PartitionId;
            batch.read = 1;
            self.given[p] += 1;
            Ok(Poll::Data)
        }
        fn is_idle(&self, _partition: PartitionId) -> bool {
            false
        }
        fn positions(&self) -> BTreeMap<PartitionId, i64> {
            BTreeMap::new()
        }
    }

    #[test]
    fn a_partition_found_while_reading_is_read_before_the_source_is_let_go() {
        let mut ahead =
            ReadAhead::start(Box::new(Growing::default()), 2, 10, "test".into()).expect("start");
        let (mut records, mut finished) = ([0u64; 2], Vec::new());
        let mut batch = Batch::default();
        let began = std::time::Instant::now();
        while finished.len() < 2 {
            assert!(
                began.elapsed() < Duration::from_secs(5),
                "stuck: {finished:?}"
            );
            batch.clear();
            match ahead.poll(&mut batch, 10).expect("poll") {
                Poll::Data => records[batch.partition as usize] += batch.read,
                Poll::Finished(p) => finished.push(p),
                Poll::Idle => {}
            }
        }
        assert_eq!(records, [3, 2]);
        assert_eq!(finished, [0, 1]);
        assert_eq!(ahead.partitions(), [0, 1]);
    }

    #[test]
    fn dropping_it_stops_a_reader_blocked_on_a_full_queue() {
        let mut ahead =
            ReadAhead::start(Box::new(Turns::default()), 1, 5, "test".into()).expect("start");
        let mut batch = Batch::default();
        while ahead.poll(&mut batch, 5).expect("poll") == Poll::Idle {}
        assert_eq!(batch.read, 5);
        std::thread::sleep(Duration::from_millis(50));
        drop(ahead); // joins the reader: hangs if it cannot see it is done
    }
}
