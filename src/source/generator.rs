//! The in-process generator as a source.
//!
//! The stream is cut into chunks of [`CHUNK`] items; chunk `c` belongs to
//! partition `c mod partitions`, and partition `p` to worker `p mod
//! workers`. The partitions (and so every watermark and late decision) do
//! not depend on the number of workers, and the union over workers is the
//! same stream. Positions are item indices. Pacing, when asked for, is by
//! wall clock.

use std::sync::Arc;
use std::time::Instant;

use super::{Batch, PartitionId, Poll, Source};
use crate::core::error::Result;
use crate::core::event::Validation;
use crate::source::traffic::{GenItem, Generator};

/// Consecutive items of one partition: runs keep a worker's batch in long
/// stretches of one partition.
pub const CHUNK: u64 = 64;

/// The partition of item `i` among `partitions`.
pub fn partition_of(i: u64, partitions: usize) -> PartitionId {
    ((i / CHUNK) % partitions.max(1) as u64) as PartitionId
}

/// One worker's share of the generated stream.
pub struct GeneratorSource {
    generator: Arc<Generator>,
    /// Index of the next item.
    next: u64,
    partitions: usize,
    index: usize,
    peers: usize,
    mine: Vec<PartitionId>,
    /// Stop before this index (`u64::MAX`: never).
    end: u64,
    /// Events per second for this worker (0: unpaced).
    rate: f64,
    started: Instant,
    produced: u64,
    /// Partitions reported finished so far.
    reported: usize,
    limits: Validation,
    scratch: Vec<u8>,
}

impl GeneratorSource {
    /// Worker `index` of `peers` over `partitions` partitions; `events` total
    /// (0: unbounded), `rate` total events/s (0: unpaced).
    pub fn new(
        generator: Arc<Generator>,
        partitions: usize,
        index: usize,
        peers: usize,
        events: u64,
        rate: f64,
        limits: Validation,
    ) -> Self {
        let partitions = partitions.max(1);
        let peers = peers.max(1);
        let mine: Vec<PartitionId> = (0..partitions)
            .filter(|p| p % peers == index)
            .map(|p| p as PartitionId)
            .collect();
        let share = mine.len() as f64 / partitions as f64;
        let mut source = GeneratorSource {
            generator,
            next: 0,
            partitions,
            index,
            peers,
            end: if events == 0 { u64::MAX } else { events },
            rate: if rate > 0.0 { rate * share } else { 0.0 },
            started: Instant::now(),
            produced: 0,
            reported: 0,
            limits,
            scratch: Vec::with_capacity(256),
            mine,
        };
        source.next = source.first_item_from(0);
        source
    }

    /// The first item at or after chunk `chunk` that this worker reads.
    fn first_item_from(&self, chunk: u64) -> u64 {
        if self.mine.is_empty() {
            return u64::MAX;
        }
        let mut c = chunk;
        while (c % self.partitions as u64) as usize % self.peers != self.index {
            c += 1;
        }
        c.saturating_mul(CHUNK)
    }
}

impl Source for GeneratorSource {
    fn partitions(&self) -> Vec<PartitionId> {
        self.mine.clone()
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
        if self.next >= self.end {
            return Ok(match self.mine.get(self.reported) {
                Some(&p) => {
                    self.reported += 1;
                    Poll::Finished(p)
                }
                None => Poll::Idle,
            });
        }
        let mut budget = max as u64;
        if self.rate > 0.0 {
            let allowed = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
            budget = budget.min(allowed.saturating_sub(self.produced));
            if budget == 0 {
                return Ok(Poll::Idle);
            }
        }
        self.limits.now_ms = crate::core::time::now_ms();
        batch.partition = partition_of(self.next, self.partitions);
        while budget > 0 && self.next < self.end {
            let i = self.next;
            match self.generator.item(i) {
                GenItem::Event(e) => {
                    // Same range checks as the wire decoder, without the JSON round trip.
                    match e.check(&self.limits) {
                        Ok(()) => {
                            batch.read += 1;
                            batch.push_event(e, i);
                        }
                        Err(_) => {
                            self.scratch.clear();
                            e.encode_into(&mut self.scratch);
                            let raw = std::mem::take(&mut self.scratch);
                            batch.push_raw(&raw, i, &self.limits);
                            self.scratch = raw;
                        }
                    }
                }
                GenItem::Malformed(line) => batch.push_raw(line.as_bytes(), i, &self.limits),
            }
            self.next = if (i + 1).is_multiple_of(CHUNK) {
                let next = self.first_item_from((i + 1) / CHUNK);
                batch.partition = partition_of(next, self.partitions);
                next
            } else {
                i + 1
            };
            self.produced += 1;
            budget -= 1;
        }
        Ok(Poll::Data)
    }
}
