//! What a worker takes back from the latest checkpoint: its partitions'
//! ledgers (offsets, pane counts) and clocks (watermark base, held records).

use std::collections::BTreeMap;

use differential_dataflow::input::InputSession;

use super::Context;
use crate::checkpoint::{Checkpoints, ClockState, HeldRecord, PartitionLedger};
use crate::core::clock::{Held, PartitionClock, Verdict};
use crate::core::error::{Error, Result};
use crate::core::event::{ContentId, Validation, WatchEvent};
use crate::core::stats::Stats;
use crate::core::time::{Millis, Pane};
use crate::source::PartitionId;

/// What a worker restores: the checkpoint time and its partitions' ledgers.
#[derive(Default)]
pub(super) struct Restore {
    pub(super) id: Option<u64>,
    pub(super) time: Option<Pane>,
    pub(super) ledgers: BTreeMap<PartitionId, PartitionLedger>,
}

impl Restore {
    /// The next offset of each restored partition.
    pub(super) fn offsets(&self) -> BTreeMap<PartitionId, i64> {
        self.ledgers
            .iter()
            .map(|(p, l)| (*p, l.next_offset))
            .collect()
    }
}

/// This worker's share of the newest valid checkpoint (partition `p` is
/// worker `p mod peers`'s, whatever layout wrote it); nothing when the job
/// does not checkpoint or no checkpoint exists.
pub(super) fn restore_state(ctx: &Context, index: usize, peers: usize) -> Result<Restore> {
    let (true, Some(store)) = (ctx.checkpointing(), &ctx.store) else {
        return Ok(Restore::default());
    };
    let Some((manifest, ledgers)) = Checkpoints::new(&**store, &ctx.job.job.name).latest_valid()?
    else {
        return Ok(Restore::default());
    };
    // Partition p belongs to worker p mod peers, whatever the layout that wrote the checkpoint.
    let mine: BTreeMap<PartitionId, PartitionLedger> = ledgers
        .into_iter()
        .filter(|(p, _)| *p as usize % peers == index)
        .collect();
    tracing::info!(checkpoint = manifest.id, time = manifest.time, partitions = ?mine.keys().collect::<Vec<_>>(), "restoring");
    Stats::add(
        &ctx.stats.restored_entries,
        mine.values().map(|l| l.entries() as u64).sum(),
    );
    Ok(Restore {
        id: Some(manifest.id),
        time: Some(manifest.time),
        ledgers: mine,
    })
}

/// A partition's clock in the driver: held records keep their event and position.
pub(super) type Clock = PartitionClock<(WatchEvent, u64)>;
/// A verdict on a held record.
pub(super) type Decided = ((WatchEvent, u64), Millis, Verdict);

/// What a checkpoint keeps of a partition's clock.
pub(super) fn clock_state(c: &Clock) -> ClockState {
    ClockState {
        base: c.base(),
        seq: c.seq(),
        held: c
            .held()
            .map(|h| HeldRecord {
                time: h.time,
                seq: h.seq,
                position: h.item.1,
                raw: h.item.0.to_json().into_bytes(),
            })
            .collect(),
    }
}

/// A partition's clock as a checkpoint left it.
pub(super) fn restored_clock(ctx: &Context, l: &PartitionLedger) -> Result<Clock> {
    // Held records passed validation when they were read; only decode them.
    let limits = Validation {
        now_ms: 0,
        max_future_ms: Millis::MAX / 2,
    };
    let held = l
        .clock
        .held
        .iter()
        .map(|h| {
            let event = WatchEvent::decode(&h.raw, &limits).map_err(|e| {
                Error::Input(format!("checkpoint: a held record does not decode: {e}"))
            })?;
            Ok(Held {
                time: h.time,
                seq: h.seq,
                item: (event, h.position),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PartitionClock::restored(
        ctx.clock,
        ctx.window,
        l.clock.base,
        l.clock.seq,
        held,
    ))
}

/// Feeds one pre-aggregated count. After a restore from a checkpoint taken at
/// time `time`, a pane before it enters the window at `time` (through the
/// carry input, whose capability holds the frontier there) and leaves a
/// window after the pane as usual: windows ending at or after `time` are
/// exactly what they were, and no hour before it is redone.
pub(super) fn feed(
    input: &mut InputSession<Pane, ContentId, i64>,
    carry: &mut InputSession<Pane, ContentId, i64>,
    time: Pane,
    width: u64,
    content: ContentId,
    pane: Pane,
    n: i64,
) {
    if pane >= time {
        input.update_at(content, pane, n);
    } else if pane + width > time {
        carry.update_at(content, time, n);
        carry.update_at(content, pane + width, -n);
    }
}
