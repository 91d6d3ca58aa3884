//! The in-process generator as a source.
//!
//! Worker `k` of `n` produces items `k, k + n, k + 2n, …` of the stream, so
//! the union over workers is the same stream for any `n`. Positions are item
//! indices. Pacing, when asked for, is by wall clock.

use std::sync::Arc;
use std::time::Instant;

use super::{Batch, PartitionId, Poll, Source};
use crate::error::Result;
use crate::event::Validation;
use crate::generator::{GenItem, Generator};

/// One worker's share of the generated stream.
pub struct GeneratorSource {
    generator: Arc<Generator>,
    next: u64,
    step: u64,
    /// Stop before this index (`u64::MAX`: never).
    end: u64,
    /// Events per second for this worker (0: unpaced).
    rate: f64,
    started: Instant,
    produced: u64,
    partition: PartitionId,
    limits: Validation,
    scratch: Vec<u8>,
    finished: bool,
}

impl GeneratorSource {
    /// Worker `index` of `peers`; `events` total (0: unbounded), `rate` total events/s (0: unpaced).
    pub fn new(
        generator: Arc<Generator>,
        index: usize,
        peers: usize,
        events: u64,
        rate: f64,
        limits: Validation,
    ) -> Self {
        GeneratorSource {
            generator,
            next: index as u64,
            step: peers as u64,
            end: if events == 0 { u64::MAX } else { events },
            rate: if rate > 0.0 { rate / peers as f64 } else { 0.0 },
            started: Instant::now(),
            produced: 0,
            partition: index as PartitionId,
            limits,
            scratch: Vec::with_capacity(256),
            finished: false,
        }
    }
}

impl Source for GeneratorSource {
    fn partitions(&self) -> Vec<PartitionId> {
        vec![self.partition]
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
        if self.finished {
            return Ok(Poll::Idle);
        }
        if self.next >= self.end {
            self.finished = true;
            return Ok(Poll::Finished(self.partition));
        }
        let mut budget = max as u64;
        if self.rate > 0.0 {
            let allowed = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
            budget = budget.min(allowed.saturating_sub(self.produced));
            if budget == 0 {
                return Ok(Poll::Idle);
            }
        }
        batch.partition = self.partition;
        self.limits.now_ms = crate::time::now_ms();
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
            self.next = self.next.saturating_add(self.step);
            self.produced += 1;
            budget -= 1;
        }
        Ok(Poll::Data)
    }
}
