//! Hourly tables: the window's counts as of the last pane of each hour.
//!
//! The `HourlyTables` operator shards the windowed collection by content,
//! applies its updates in time order as the frontier allows, and when the
//! frontier passes the last pane of an hour emits that worker's nonzero
//! counts for it. The frontier, not a timer, decides that an hour is final.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::StreamVec;

use super::live::{Early, LiveUpdate, Publish, Publisher};
use super::{follow_frontier, shard, Counts, Views};
use crate::core::event::ContentId;
use crate::core::stats::Stats;
use crate::core::time::{Pane, WindowSpec};

/// One worker's share of one hour: the window ending at the hour's last pane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourTable {
    /// Hours since the epoch.
    pub hour: u64,
    /// The worker that owns these content ids.
    pub worker: usize,
    /// `(content, views)`, sorted by content, views nonzero.
    pub rows: Vec<(ContentId, i64)>,
}

/// Emits each worker's [`HourTable`] at the time of the hour's last pane
/// and, when `live` is on, its shard of the current window for the live
/// board (see [`super::live`]), with the provisional counts if asked.
///
/// # Examples
///
/// Title 7 viewed 3 times in pane 5 (hour 0) and title 8 once in pane 70
/// (hour 1): the window ending at hour 0's last pane (59) holds title 7's
/// views; the one ending at hour 1's (119) holds only title 8's, title 7's
/// having left it at pane 65.
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use differential_dataflow::input::Input;
/// use popularity::core::time::WindowSpec;
/// use popularity::dataflow::live::Publish;
/// use popularity::dataflow::{hourly_tables, windowed_views};
/// use timely::dataflow::operators::Inspect;
///
/// let tables = Arc::new(Mutex::new(Vec::new()));
/// let sink = tables.clone();
/// timely::execute_directly(move |worker| {
///     let window = WindowSpec::hourly();
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, views) = scope.new_collection::<u64, i64>();
///         let windowed = windowed_views(views, &window);
///         let (hours, _live) = hourly_tables(windowed, window, Arc::default(), Publish::Off);
///         hours.inspect(move |table| sink.lock().expect("not poisoned").push(table.clone()));
///         input
///     });
///     input.advance_to(5);
///     input.update(7, 3);
///     input.advance_to(70);
///     input.update(8, 1);
/// });
/// let tables = tables.lock().expect("not poisoned");
/// let rows: Vec<_> = tables
///     .iter()
///     .filter(|t| !t.rows.is_empty())
///     .map(|t| (t.hour, t.rows.clone()))
///     .collect();
/// assert_eq!(rows, [(0, vec![(7, 3)]), (1, vec![(8, 1)])]);
/// ```
pub fn hourly_tables<'scope>(
    windowed: Views<'scope>,
    window: WindowSpec,
    stats: Arc<Stats>,
    live: Publish,
) -> (
    StreamVec<'scope, Pane, HourTable>,
    StreamVec<'scope, Pane, LiveUpdate>,
) {
    let worker = windowed.scope().index();
    let scope = windowed.scope();
    let out = windowed.inner.unary_frontier(
        Exchange::new(|u: &(ContentId, Pane, i64)| shard(u.0)),
        "HourlyTables",
        move |initial, info| {
            let activator = scope.activator_for(info.address.clone());
            let mut publisher = Publisher::default();
            // The least time we may still emit at: downgraded to the input frontier.
            let mut held = Some(initial);
            let mut pending: BTreeMap<Pane, Vec<(ContentId, i64)>> = BTreeMap::new();
            let mut counts = Counts::default();
            // Counts are valid from this pane on (the last pane applied).
            let mut cursor: Pane = 0;
            let mut state: i64 = 0;
            // The newest pane with views received (a view enters with a positive diff).
            let mut newest: Pane = 0;
            move |(input, frontier), output| {
                input.for_each(|_cap, data| {
                    // What is received changes the provisional counts.
                    if live == Publish::Provisional {
                        publisher.pacer.arrived();
                    }
                    for (content, time, diff) in data.drain(..) {
                        if diff > 0 {
                            newest = newest.max(time);
                        }
                        pending.entry(time).or_default().push((content, diff));
                    }
                });
                let bound: Option<Pane> = frontier.frontier().first().copied();
                loop {
                    let next = pending
                        .first_key_value()
                        .map(|(t, _)| *t)
                        .filter(|t| bound.is_none_or(|b| *t < b));
                    // Hours ending before the next update (or the frontier) are final.
                    if let (Some(upto), Some(cap)) = (next.or(bound), held.as_ref()) {
                        while !counts.is_empty() {
                            let end = window.last_pane_of_hour(window.hour_of(cursor));
                            if end >= upto {
                                break;
                            }
                            let mut rows: Vec<(ContentId, i64)> =
                                counts.iter().map(|(c, n)| (*c, *n)).collect();
                            rows.sort_unstable();
                            output
                                .session(&cap.delayed(&end))
                                .give(Out::Hour(HourTable {
                                    hour: window.hour_of(end),
                                    worker,
                                    rows,
                                }));
                            cursor = end + 1;
                        }
                    }
                    if let (true, None, Some(cap)) = (live.on(), next, held.as_ref()) {
                        match publisher.due(bound) {
                            Ok(due) => {
                                let newest = newest.max(stats.taken_pane.load(Ordering::Relaxed));
                                let early = (live == Publish::Provisional)
                                    .then(|| early(&pending, due.as_of, newest));
                                let shard = publisher.shard(due, || counts.clone(), early);
                                let update = LiveUpdate::Window { worker, shard };
                                output.session(cap).give(Out::Live(update));
                            }
                            Err(Some(wait)) => activator.activate_after(wait),
                            Err(None) => {}
                        }
                    }
                    let Some(time) = next else { break };
                    if let Some(updates) = pending.remove(&time) {
                        for (content, diff) in updates {
                            let entry = counts.entry(content).or_insert(0);
                            *entry += diff;
                            if *entry == 0 {
                                counts.remove(&content);
                            }
                        }
                    }
                    cursor = time;
                    publisher.pacer.changed();
                }
                follow_frontier(&mut held, bound);
                let now =
                    pending.values().map(|v| v.len() as i64).sum::<i64>() + counts.len() as i64;
                stats.live_state_delta(now - state);
                state = now;
            }
        },
    );
    let mut split = out.partition(2, |o| match o {
        Out::Hour(_) => (0, o),
        Out::Live(_) => (1, o),
    });
    let (Some(live), Some(hours)) = (split.pop(), split.pop()) else {
        unreachable!("partition gives as many streams as asked for")
    };
    let hours = hours.flat_map(|o| match o {
        Out::Hour(h) => Some(h),
        Out::Live(_) => None,
    });
    let live = live.flat_map(|o| match o {
        Out::Live(l) => Some(l),
        Out::Hour(_) => None,
    });
    (hours, live)
}

/// The provisional counts of the window ending at the newest pane received
/// (here, or by the process: see [`Stats::taken_pane`]): the updates still
/// pending (every time after `as_of`) up to it.
fn early(pending: &BTreeMap<Pane, Vec<(ContentId, i64)>>, as_of: Pane, newest: Pane) -> Arc<Early> {
    let upto = newest.max(as_of);
    let updates = pending
        .range(..=upto)
        .flat_map(|(t, u)| u.iter().map(|&(id, v)| (id, *t, v)));
    Arc::new(Early::sum(upto, updates))
}

/// What the operator emits, before it is split in two streams.
#[derive(Clone, Debug)]
enum Out {
    Hour(HourTable),
    Live(LiveUpdate),
}
