//! The live window and model, shared with the query API.
//!
//! The stages that hold the window (`HourlyTables`, or with the model its
//! title stage) and the model's shards send a [`LiveUpdate`] of their shard,
//! as of the last pane their input frontier has passed, at most about once
//! a second. [`publish_live`], the graph's last operator on that stream,
//! puts each on its board; the stages themselves touch no shared state.
//! Readers get an immutable snapshot per shard; nothing here blocks a
//! worker for more than a pointer swap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;

use super::Counts;
use crate::core::event::ContentId;
use crate::core::model::NodeRow;
use crate::core::stats::Stats;
use crate::core::time::Pane;

/// How often a stage sends its shard to the boards at most.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What a stage sends to the boards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Publish {
    /// Nothing: no endpoint reads the boards.
    #[default]
    Off,
    /// The final counts: of the panes the watermark has passed.
    Final,
    /// The final counts and, beside them, the provisional ones ([`Early`]).
    Provisional,
}

impl Publish {
    /// Whether the stage publishes at all.
    pub fn on(self) -> bool {
        self != Publish::Off
    }
}

/// One shard's counts, as of a pane.
#[derive(Clone, Debug, Default)]
pub struct LiveShard {
    /// The last pane whose updates are all applied.
    pub as_of: Pane,
    /// Views in the window ending at `as_of`, per title (nonzero only).
    pub counts: Arc<Counts>,
    /// Provisional counts of a later window, when the job publishes them.
    pub early: Option<Arc<Early>>,
}

/// Provisional counts: every view this shard has received, also of panes
/// the watermark has not passed. Late views of those panes may still come,
/// so these are neither final nor published to the store; the hourly
/// tables stay exact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Early {
    /// The newest pane this shard has views of: the window counted ends here.
    pub as_of: Pane,
    /// Per title, what to add to the final counts (as of [`LiveShard::as_of`])
    /// to get the views received so far in the window ending at `as_of`:
    /// views of the later panes, less the views that left the window since.
    /// Nonzero only.
    pub delta: Counts,
    /// When these were summed (wall clock, ms): they hold every view the
    /// shard had been given by then.
    pub made_ms: crate::core::time::Millis,
}

impl Early {
    /// Sums the window's updates not yet applied, `(title, time, views)`
    /// (a view enters at its pane and leaves one window later, negated),
    /// into the delta of the window ending at `as_of`: the updates of
    /// times up to `as_of`.
    ///
    /// ```
    /// use popularity::dataflow::live::Early;
    ///
    /// // Final counts as of pane 9; title 7 viewed twice in pane 10 and
    /// // once in pane 12, title 8's view of pane 3 leaves at pane 11 (a
    /// // window of 8 panes), title 9's at pane 13.
    /// let early = Early::sum(12, [(7, 10, 2), (7, 12, 1), (8, 11, -1), (9, 13, -1)]);
    /// assert_eq!(early.delta.get(&7), Some(&3));
    /// assert_eq!(early.delta.get(&8), Some(&-1));
    /// assert_eq!(early.delta.get(&9), None, "leaves after pane 12");
    /// ```
    pub fn sum(as_of: Pane, updates: impl IntoIterator<Item = (ContentId, Pane, i64)>) -> Early {
        let mut delta = Counts::default();
        for (id, time, views) in updates {
            if time <= as_of {
                *delta.entry(id).or_insert(0) += views;
            }
        }
        delta.retain(|_, v| *v != 0);
        let made_ms = crate::core::time::now_ms();
        Early {
            as_of,
            delta,
            made_ms,
        }
    }
}

/// The latest shard of each worker (or stage) in this process: what the
/// query API reads.
#[derive(Debug)]
pub struct Board<S> {
    shards: Mutex<BTreeMap<usize, S>>,
    version: AtomicU64,
}

impl<S> Default for Board<S> {
    fn default() -> Self {
        Board {
            shards: Mutex::default(),
            version: AtomicU64::new(0),
        }
    }
}

impl<S: Clone> Board<S> {
    /// Replaces shard `slot`.
    pub fn publish(&self, slot: usize, shard: S) {
        if let Ok(mut s) = self.shards.lock() {
            s.insert(slot, shard);
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Bumped by every publish: answers computed at one version hold
    /// until it moves.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every shard published so far, by slot.
    pub fn shards(&self) -> BTreeMap<usize, S> {
        self.shards.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The window's shards, by worker.
pub type LiveBoard = Board<LiveShard>;

/// The model's shards, by stage: `2 × worker`, plus one for the node stage.
pub type ModelBoard = Board<ModelShard>;

/// One worker's share of the live model.
#[derive(Clone, Debug, Default)]
pub struct ModelShard {
    /// The last pane whose updates are all applied.
    pub as_of: Pane,
    /// Node rows, by id.
    pub rows: Arc<Vec<NodeRow>>,
    /// Score-window views of all episodes.
    pub total_24h: i64,
}

/// A shard on its way to a board.
#[derive(Clone, Debug)]
pub enum LiveUpdate {
    /// A worker's window counts.
    Window {
        /// The worker whose shard this is.
        worker: usize,
        /// Its counts.
        shard: LiveShard,
    },
    /// A stage's share of the model: `slot` is `2 × worker`, plus one for
    /// the node stage.
    Model {
        /// Which stage of which worker.
        slot: usize,
        /// Its rows.
        shard: ModelShard,
    },
}

/// The boards a job publishes to; `None` where nobody reads (no endpoint).
#[derive(Clone, Debug, Default)]
pub struct Boards {
    /// The window's counts.
    pub window: Option<Arc<LiveBoard>>,
    /// The model's rows.
    pub model: Option<Arc<ModelBoard>>,
    /// The process's counters: their [`crate::core::freshness::Freshness`]
    /// learns when a pane is shown (once each worker registered in
    /// [`Stats::steps`] has published it).
    pub stats: Arc<Stats>,
}

/// Hands `stream` on unchanged, and at once. An input hands what it is
/// given to an exchange that holds it in buffers until the input's time
/// moves: soon enough for final counts, which wait for that time anyway,
/// but provisional counts must see the newest records while the
/// watermark stands still. An operator's output is flushed at every
/// activation, so the records leave this one as soon as they arrive.
pub fn flushed<D: timely::ExchangeData>(stream: StreamVec<'_, Pane, D>) -> StreamVec<'_, Pane, D> {
    stream.unary::<CapacityContainerBuilder<Vec<D>>, _, _, _>(Pipeline, "Flushed", |_, _| {
        |input, output| {
            input.for_each(|time, data| output.session(&time).give_container(data));
        }
    })
}

/// The last operator on the live stream: each update replaces its shard on
/// its board, in this worker (no exchange: a shard is its worker's own).
pub fn publish_live(updates: StreamVec<'_, Pane, LiveUpdate>, boards: Boards) {
    updates.sink(Pipeline, "PublishLive", move |(input, _frontier)| {
        input.for_each(|_cap, data| {
            for update in data.drain(..) {
                match update {
                    LiveUpdate::Window { worker, shard } => {
                        if let Some(board) = &boards.window {
                            board.publish(worker, shard);
                            shown(board, &boards);
                        }
                    }
                    LiveUpdate::Model { slot, shard } => {
                        if let Some(board) = &boards.model {
                            board.publish(slot, shard);
                        }
                    }
                }
            }
        });
    });
}

/// Tells the freshness probe the last pane every worker's window shard shows
/// (the model's title stage sends its window shard with its model shard).
fn shown(board: &LiveBoard, boards: &Boards) {
    let shards = board.shards();
    if shards.len() >= boards.stats.steps.workers() {
        let now = crate::core::time::now_ms();
        if let Some(as_of) = shards.values().map(|s| s.as_of).min() {
            boards.stats.freshness.shown(as_of, now);
        }
        // Provisional counts hold what their worker had been given when made.
        let made = shards.values().map(|s| s.early.as_ref().map(|e| e.made_ms));
        if let Some(Some(made)) = made.min() {
            boards.stats.early_freshness.shown(made.max(0) as u64, now);
        }
    }
}

/// A window stage's live publication: when its shard is due, and the final
/// counts it last sent, sent again as they are while only its provisional
/// counts change (a copy of the counts costs a worker more than a sum of
/// what is pending).
#[derive(Debug, Default)]
pub struct Publisher {
    /// When the shard is due.
    pub pacer: Pacer,
    sent: Arc<Counts>,
}

impl Publisher {
    /// Whether a shard is due (see [`Pacer::due`]).
    pub fn due(&mut self, bound: Option<Pane>) -> Result<Due, Option<Duration>> {
        self.pacer.due(bound)
    }

    /// The shard that is `due`: `counts` makes the final counts, called
    /// only if they changed since the last shard.
    pub fn shard(
        &mut self,
        due: Due,
        counts: impl FnOnce() -> Counts,
        early: Option<Arc<Early>>,
    ) -> LiveShard {
        if due.finals {
            self.sent = Arc::new(counts());
        }
        LiveShard {
            as_of: due.as_of,
            counts: self.sent.clone(),
            early,
        }
    }
}

/// When a stage may send its shard again: at most every [`PUBLISH_EVERY`],
/// and only when something changed (an update applied, or the frontier
/// moved; or, for provisional counts, an update arrived) since the last one.
#[derive(Debug)]
pub struct Pacer {
    last: std::time::Instant,
    dirty: bool,
    arrived: bool,
    sent_bound: Option<Pane>,
}

/// A shard due: as of which pane, and whether its final counts changed
/// since the last one (if not, only its provisional counts did: the final
/// ones already sent can be sent again as they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The last pane whose updates are all applied.
    pub as_of: Pane,
    /// The final counts changed.
    pub finals: bool,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            last: std::time::Instant::now() - PUBLISH_EVERY,
            dirty: false,
            arrived: false,
            sent_bound: None,
        }
    }
}

impl Pacer {
    /// Notes that the stage's state changed.
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// Notes that updates arrived (not applied yet): only provisional
    /// counts change.
    pub fn arrived(&mut self) {
        self.arrived = true;
    }

    /// `Ok(due)` when a shard is due now (and counts it as sent),
    /// `Err(Some(wait))` when one is due after `wait`, `Err(None)` when
    /// none is due.
    pub fn due(&mut self, bound: Option<Pane>) -> Result<Due, Option<Duration>> {
        let finals = self.dirty || bound.is_some_and(|b| Some(b) != self.sent_bound);
        let b = bound.filter(|_| finals || self.arrived).ok_or(None)?;
        let since = self.last.elapsed();
        if since < PUBLISH_EVERY {
            return Err(Some(PUBLISH_EVERY - since));
        }
        self.sent_bound = Some(b);
        self.last = std::time::Instant::now();
        self.dirty = false;
        self.arrived = false;
        let as_of = b.saturating_sub(1);
        Ok(Due { as_of, finals })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_due_once_per_change_and_interval() {
        let mut pacer = Pacer::default();
        assert_eq!(pacer.due(None), Err(None), "no frontier, nothing to show");
        let due = |as_of, finals| Ok(Due { as_of, finals });
        assert_eq!(
            pacer.due(Some(5)),
            due(4, true),
            "the first bound is due at once"
        );
        assert!(
            matches!(pacer.due(Some(6)), Err(Some(_))),
            "not twice a second"
        );
        let mut idle = Pacer {
            last: std::time::Instant::now() - PUBLISH_EVERY,
            dirty: false,
            arrived: false,
            sent_bound: Some(6),
        };
        assert_eq!(idle.due(Some(6)), Err(None), "nothing changed");
        idle.changed();
        assert_eq!(idle.due(Some(6)), due(5, true));
        idle.last = std::time::Instant::now() - PUBLISH_EVERY;
        idle.arrived();
        assert_eq!(
            idle.due(Some(6)),
            due(5, false),
            "only provisional counts changed"
        );
        idle.last = std::time::Instant::now() - PUBLISH_EVERY;
        assert_eq!(idle.due(Some(6)), Err(None), "nothing since");
    }
}
