//! The `checkpoint-bench` command: checkpoint and load a given number of entries, timed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::*;
use crate::core::error::{Error, Result};
use crate::core::time::Pane;
use crate::sink::store::ObjectStore;
use crate::source::PartitionId;

/// Figures of [`bench()`].
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// `(content, pane)` entries checkpointed.
    pub entries: u64,
    /// Size of the part file.
    pub bytes: u64,
    /// Encoding the part and queueing it for the writer, seconds.
    pub take_seconds: f64,
    /// Writing the part, its metadata and the manifest, seconds.
    pub complete_seconds: f64,
    /// Finding, reading, verifying and decoding the checkpoint, seconds.
    pub load_seconds: f64,
}

/// Checkpoints `entries` live entries (over `panes` panes of one partition) to
/// `store` and loads them back, timing each step.
pub fn bench(
    store: std::sync::Arc<dyn ObjectStore>,
    entries: u64,
    panes: u64,
) -> Result<BenchReport> {
    let panes = panes.max(1);
    let stats = std::sync::Arc::new(crate::core::stats::Stats::default());
    let writer = Writer::spawn(store.clone(), "checkpoint-bench", 1, stats)?;
    let mut cp = Checkpointer::new(writer.clone(), 0, 1, 1, panes);
    let per_pane = entries.div_ceil(panes);
    let first: Pane = 29_500_000;
    let mut n = 0;
    'fill: for p in 0..panes {
        for c in 0..per_pane {
            if n == entries {
                break 'fill;
            }
            cp.record(0, c * 7 + p, first + p, 1 + (c % 5) as i64);
            n += 1;
        }
    }
    let positions: BTreeMap<PartitionId, i64> = [(0, 123_456_789)].into();
    let clocks: BTreeMap<PartitionId, ClockState> = [(
        0,
        ClockState {
            base: Some(1_770_000_000_000),
            ..Default::default()
        },
    )]
    .into();
    let id = crate::core::time::now_ms() as u64;
    let t = std::time::Instant::now();
    let meta = cp.take(id, first, &positions, &clocks, None)?;
    let take_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    writer.set_frontier(Some(first));
    writer.finish(std::time::Duration::from_secs(600));
    if !writer.is_complete(id) {
        return Err(Error::External {
            system: "object store",
            message: format!("checkpoint {id} was not written"),
            retryable: true,
        });
    }
    let complete_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let (_, ledgers) = Checkpoints::new(&*store, "checkpoint-bench")
        .latest_valid()?
        .ok_or_else(|| Error::Internal("the checkpoint just written is not there".into()))?;
    let load_seconds = t.elapsed().as_secs_f64();
    let got: u64 = ledgers.iter().map(|(_, l)| l.entries() as u64).sum();
    if got != entries {
        return Err(Error::Internal(format!(
            "wrote {entries} entries, read back {got}"
        )));
    }
    Ok(BenchReport {
        entries,
        bytes: meta.bytes,
        take_seconds,
        complete_seconds,
        load_seconds,
    })
}
