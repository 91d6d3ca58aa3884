//! Sources: where watch events come from, behind one interface.
//!
//! A source instance belongs to one worker and reads one or more
//! *partitions* (a Kafka partition, a byte range of a file, a residue class
//! of the generator's stream). It hands decoded events and rejected records
//! to the driver in batches, tagged with the partition and each record's
//! position in it, so that watermarks, dead letters and (later) checkpoints
//! are per partition.

pub mod catalog_feed;
pub mod file;
pub mod generator;
pub mod kafka;
pub mod read_ahead;
pub mod traffic;

use crate::core::error::Result;
use crate::core::event::{DecodeError, Validation, WatchEvent};
use crate::core::time::Millis;

/// Identifies a partition within its source.
pub type PartitionId = u32;

pub use crate::config::DEFAULT_PARTITIONS;

/// A record the decoder refused.
#[derive(Clone, Debug)]
pub struct Reject {
    /// The partition it came from.
    pub partition: PartitionId,
    /// Position of the record in its partition (offset, byte, index).
    pub position: u64,
    /// The record as read.
    pub raw: Vec<u8>,
    /// Why.
    pub error: DecodeError,
}

/// One batch of records, from one or more partitions, each partition's in order.
#[derive(Debug, Default)]
pub struct Batch {
    /// The partition of the records pushed next.
    pub partition: PartitionId,
    /// Decoded events, in partition order.
    pub events: Vec<WatchEvent>,
    /// Position of each event (parallel to `events`).
    pub positions: Vec<u64>,
    /// Partition of each event (parallel to `events`).
    pub partitions: Vec<PartitionId>,
    /// Records that failed to decode.
    pub rejects: Vec<Reject>,
    /// Records read, valid or not.
    pub read: u64,
    /// Sampled events' arrival times (ms, the Kafka timestamp), by index
    /// into `events`: see [`crate::core::freshness`].
    pub arrivals: Vec<(usize, Millis)>,
}

impl Batch {
    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.events.clear();
        self.positions.clear();
        self.partitions.clear();
        self.rejects.clear();
        self.arrivals.clear();
        self.read = 0;
    }

    /// Adds an already decoded event of the current partition.
    pub fn push_event(&mut self, event: WatchEvent, position: u64) {
        self.events.push(event);
        self.positions.push(position);
        self.partitions.push(self.partition);
    }

    /// Decodes `raw` at `position` into the batch.
    pub fn push_raw(&mut self, raw: &[u8], position: u64, limits: &Validation) {
        self.read += 1;
        match WatchEvent::decode(raw, limits) {
            Ok(e) => self.push_event(e, position),
            Err(error) => self.rejects.push(Reject {
                partition: self.partition,
                position,
                raw: raw.to_vec(),
                error,
            }),
        }
    }
}

/// What a poll produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The batch holds records.
    Data,
    /// Nothing right now; poll again later.
    Idle,
    /// This partition will never produce more.
    Finished(PartitionId),
}

/// Whether every partition a source knows now (a Kafka source finds new
/// ones while running) has reported [`Poll::Finished`]: the one rule by
/// which a source's reader lets it go and a worker ends its input.
pub fn all_finished(
    partitions: &[PartitionId],
    finished: &std::collections::BTreeSet<PartitionId>,
) -> bool {
    partitions.iter().all(|p| finished.contains(p))
}

/// A source of watch events owned by one worker.
pub trait Source {
    /// The partitions this instance reads.
    fn partitions(&self) -> Vec<PartitionId>;
    /// Fills `batch` (cleared by the caller) with up to `max` records.
    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll>;
    /// True if `partition` has been silent long enough that it should stop
    /// holding the watermark back.
    fn is_idle(&self, _partition: PartitionId) -> bool {
        false
    }
    /// Asks the source to read `partition` next (the driver names the one
    /// whose watermark trails), so a worker's partitions advance together.
    fn focus(&mut self, _partition: PartitionId) {}
    /// Next position to read of each partition, for checkpoints (empty: not resumable).
    fn positions(&self) -> std::collections::BTreeMap<PartitionId, i64> {
        std::collections::BTreeMap::new()
    }
}
