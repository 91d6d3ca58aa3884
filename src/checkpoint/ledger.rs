//! A worker's side of checkpointing: the ledger of what its partitions
//! absorbed, and when a checkpoint is due.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::format::*;
use super::Writer;
use crate::core::error::Result;
use crate::core::event::ContentId;
use crate::core::time::Pane;
use crate::source::PartitionId;

/// The next move of a stopping worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopStep {
    /// Its final checkpoint (or a newer one) is complete, and no peer
    /// stopped at a newer one: it may leave.
    Done,
    /// A peer stopped at this newer id: take a part of it too and wait for that.
    Follow(u64),
    /// Keep stepping the dataflow.
    Wait,
}

/// A worker's side of checkpointing: keeps its partitions' ledgers and
/// hands its part to the process's [`Writer`] on schedule.
pub struct Checkpointer {
    writer: Arc<Writer>,
    index: usize,
    peers: usize,
    interval_ms: u64,
    window_panes: u64,
    /// What this worker's partitions have contributed.
    pub ledgers: BTreeMap<PartitionId, PartitionLedger>,
    last_id: Option<u64>,
    /// The time of the checkpoint this run restored from: the frontier of a
    /// new checkpoint is never below it (hours before it are already out,
    /// and the restored ledgers hold nothing older).
    floor: Pane,
}

impl Checkpointer {
    /// A checkpointer for worker `index` of `peers`.
    pub fn new(
        writer: Arc<Writer>,
        index: usize,
        peers: usize,
        interval_ms: u64,
        window_panes: u64,
    ) -> Self {
        Checkpointer {
            writer,
            index,
            peers,
            interval_ms: interval_ms.max(1),
            window_panes,
            ledgers: BTreeMap::new(),
            last_id: None,
            floor: 0,
        }
    }

    /// The process's writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Continues after a restore from checkpoint `id` taken at `time`: new ids
    /// are larger, and new checkpoint times are not earlier.
    pub fn restored(&mut self, id: u64, time: Pane) {
        self.last_id = Some(id);
        self.floor = time;
    }

    /// Adds accepted views to a partition's ledger.
    pub fn record(&mut self, partition: PartitionId, content: ContentId, pane: Pane, n: i64) {
        *self
            .ledgers
            .entry(partition)
            .or_default()
            .panes
            .entry(pane)
            .or_default()
            .entry(content)
            .or_insert(0) += n;
    }

    /// The id of the checkpoint due now, if this worker has not taken it.
    pub fn due(&self, now_ms: u64) -> Option<u64> {
        let id = now_ms / self.interval_ms;
        (self.last_id.is_none_or(|l| id > l)).then_some(id)
    }

    /// The id of the final checkpoint (on stop): the next interval's, or
    /// the one another worker of this process chose if that is newer.
    pub fn final_id(&self, now_ms: u64) -> u64 {
        let own = (now_ms / self.interval_ms + 1).max(self.last_id.map_or(0, |l| l + 1));
        self.writer.propose_final(own)
    }

    /// What a stopping worker whose final checkpoint is `id` does next.
    pub fn stop_step(&self, id: u64) -> StopStep {
        if self.writer.is_released(id) {
            StopStep::Done
        } else if let Some(newer) = self.writer.newer_stop(id) {
            StopStep::Follow(newer)
        } else {
            StopStep::Wait
        }
    }

    /// Captures this worker's part of checkpoint `id` and queues it for the
    /// writer. `frontier` is the dataflow's output frontier now; `positions`
    /// the next offsets and `clocks` the clocks of this worker's partitions;
    /// `retry_for`: how long the writer may retry it; `Some` marks the part
    /// of a stop (see [`PartMeta::stop`]).
    pub fn take(
        &mut self,
        id: u64,
        frontier: Pane,
        positions: &BTreeMap<PartitionId, i64>,
        clocks: &BTreeMap<PartitionId, ClockState>,
        retry_for: Option<std::time::Duration>,
    ) -> Result<PartMeta> {
        self.last_id = Some(id);
        let frontier = frontier.max(self.floor);
        for (&p, &offset) in positions {
            let l = self.ledgers.entry(p).or_default();
            l.next_offset = offset;
            l.clock = clocks.get(&p).cloned().unwrap_or_default();
        }
        for l in self.ledgers.values_mut() {
            l.prune(frontier, self.window_panes);
        }
        let list: Vec<(PartitionId, &PartitionLedger)> = self
            .ledgers
            .iter()
            .filter(|(p, _)| positions.contains_key(p))
            .map(|(p, l)| (*p, l))
            .collect();
        let part = encode_part(&list);
        let meta = PartMeta {
            worker: self.index,
            peers: self.peers,
            frontier,
            partitions: list.iter().map(|(p, _)| *p).collect(),
            entries: list.iter().map(|(_, l)| l.entries() as u64).sum(),
            bytes: part.len() as u64,
            crc32: crc32(&part[24..]),
            stop: retry_for.is_some(),
        };
        self.writer.submit(id, part, meta.clone(), retry_for)?;
        Ok(meta)
    }
}
