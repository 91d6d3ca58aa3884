//! Hourly snapshots: Parquet parts per worker, then a `_SUCCESS` manifest.
//!
//! Layout under the store root, Hive style:
//!
//! ```text
//! titles/dt=2026-01-01/hour=05/part-00000.parquet   one per worker with rows
//! titles/dt=2026-01-01/hour=05/_SUCCESS             JSON manifest, written last
//! ```
//!
//! `WriteParts` runs on every worker and puts its part of each finished
//! hour. `PublishHours` runs on worker 0: the part records of an hour reach
//! it stamped with the hour's last pane, so when its input frontier passes
//! that pane every part of the hour has been written, and it writes the
//! manifest. An hour without `_SUCCESS` does not exist for readers. Hours in
//! an event-time gap (no views at all) get a manifest with no parts once a
//! later hour is published, so the published hours are contiguous.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

pub use super::layout::{
    hour_prefix, manifest_for, part_name, published_hours, published_table_hours, read_hour,
    read_table_hour, Manifest, ManifestPart, PartRecord, SUCCESS, TITLES,
};
use super::parquet::{encode_titles, TitleRow};
use super::store::ObjectStore;
use super::tables::{
    encode_nodes, encode_trending, table_of, CHANNELS, SHOWS, TITLE_MEASURES, TRENDING,
};
use super::uploader::Uploader;
use crate::core::error::{Error, FaultSlot, Result};
use crate::core::model::{give_back, rank_all, NodeRow};
use crate::core::stats::Stats;
use crate::core::time::{Pane, WindowSpec};
use crate::dataflow::model::ModelHour;
use crate::dataflow::HourTable;
use timely::dataflow::operators::vec::{Map, Partition};

/// Writes each worker's share of each finished hour as a Parquet part.
///
/// Encoding and upload run on an uploader thread; the hour's capability is
/// held until the part is stored, so the part record (and with it the
/// frontier) moves on only once the object exists.
pub fn write_parts<'scope>(
    hours: StreamVec<'scope, Pane, HourTable>,
    store: Arc<dyn ObjectStore>,
    window: WindowSpec,
    stats: Arc<Stats>,
    fault: Arc<FaultSlot>,
) -> StreamVec<'scope, Pane, PartRecord> {
    let writer = Writer {
        name: "WriteParts",
        thread: "part-writer",
        store,
        window,
        stats,
        fault,
    };
    let write = |store: &dyn ObjectStore, window: &WindowSpec, table: &HourTable| {
        write_part(store, window, table).map(|record| vec![record])
    };
    write_each(hours, writer, write, drop)
}

/// Where and how a write operator runs: its operator and thread names,
/// its store, and where its counters and its failure go.
struct Writer {
    name: &'static str,
    thread: &'static str,
    store: Arc<dyn ObjectStore>,
    window: WindowSpec,
    stats: Arc<Stats>,
    fault: Arc<FaultSlot>,
}

/// The write operator: each input (one worker's share of an hour) is
/// written by `write` on the uploader thread, timed; its capability is held
/// until the parts exist, then their records go on.
fn write_each<'scope, T, W>(
    hours: StreamVec<'scope, Pane, T>,
    writer: Writer,
    write: W,
    done: fn(T),
) -> StreamVec<'scope, Pane, PartRecord>
where
    T: Clone + Send + Sync + 'static,
    W: Fn(&dyn ObjectStore, &WindowSpec, &T) -> Result<Vec<PartRecord>> + Copy + Send + 'static,
{
    let worker = hours.scope().worker();
    let Writer {
        name,
        thread,
        store,
        window,
        stats,
        fault,
    } = writer;
    hours.unary_frontier(Pipeline, name, move |_cap, info| {
        let activator = worker.sync_activator_for(info.address.to_vec());
        let mut uploader: Uploader<Vec<PartRecord>> =
            Uploader::spawn(thread, store, activator, stats.clone());
        let mut inflight: HashMap<u64, Capability<Pane>> = HashMap::new();
        move |(input, _frontier), output| {
            input.for_each(|cap, data| {
                for item in data.drain(..) {
                    let Some(held) = cap.retain_least(output.output_index()) else {
                        continue;
                    };
                    let item = Handed(Some(item), done);
                    let timing = stats.clone();
                    let id = uploader.submit(Box::new(move |store| {
                        let started = std::time::Instant::now();
                        let records = write(store, &window, item.get())?;
                        let took = started.elapsed().as_micros() as u64;
                        Stats::add(&timing.part_write_micros, took);
                        Ok(records)
                    }));
                    inflight.insert(id, held);
                }
            });
            let stats = &stats;
            deliver(
                &uploader,
                &mut inflight,
                &fault,
                (&window, stats),
                |cap, records| {
                    for record in &records {
                        count_part(stats, record);
                    }
                    output.session(cap).give_iterator(records.into_iter());
                },
            );
        }
    })
}

/// An item a write job holds: handed to its `done` when the job is dropped,
/// after its last attempt.
struct Handed<T>(Option<T>, fn(T));

impl<T> Handed<T> {
    fn get(&self) -> &T {
        self.0
            .as_ref()
            .expect("bug: an item is taken only when dropped")
    }
}

impl<T> Drop for Handed<T> {
    fn drop(&mut self) {
        if let Some(item) = self.0.take() {
            (self.1)(item);
        }
    }
}

fn write_part(
    store: &dyn ObjectStore,
    window: &WindowSpec,
    table: &HourTable,
) -> Result<PartRecord> {
    let (start, end) = window.window_bounds(window.last_pane_of_hour(table.hour));
    let rows: Vec<TitleRow> = table
        .rows
        .iter()
        .map(|&(content_id, views)| TitleRow {
            content_id,
            views,
            window_start: start,
            window_end: end,
        })
        .collect();
    let bytes = encode_titles(&rows)?;
    let name = part_name(table.worker);
    store.put(
        &format!("{}{name}", hour_prefix(TITLES, table.hour)),
        &bytes,
    )?;
    Ok(PartRecord {
        table: TITLES.to_string(),
        hour: table.hour,
        name,
        rows: rows.len() as u64,
        bytes: bytes.len() as u64,
    })
}

/// Publishes each hour with a `_SUCCESS` manifest once all its parts exist.
pub fn publish_hours<'scope>(
    parts: StreamVec<'scope, Pane, PartRecord>,
    store: Arc<dyn ObjectStore>,
    window: WindowSpec,
    stats: Arc<Stats>,
    fault: Arc<FaultSlot>,
    groups: Vec<Vec<&'static str>>,
) -> StreamVec<'scope, Pane, Manifest> {
    let worker = parts.scope().worker();
    parts.unary_frontier(
        Exchange::new(|_: &PartRecord| 0),
        "PublishHours",
        move |initial, info| {
            let activator = worker.sync_activator_for(info.address.to_vec());
            let mut uploader: Uploader<Vec<Manifest>> =
                Uploader::spawn("hour-publisher", store, activator, stats.clone());
            let mut inflight: HashMap<u64, Capability<Pane>> = HashMap::new();
            let mut held = Some(initial);
            let mut pending: BTreeMap<Pane, Vec<PartRecord>> = BTreeMap::new();
            // Per group of tables: the last hour published.
            let mut last_published: Vec<Option<u64>> = vec![None; groups.len()];
            move |(input, frontier), output| {
                input.for_each(|_cap, data| {
                    for record in data.drain(..) {
                        let time = window.last_pane_of_hour(record.hour);
                        pending.entry(time).or_default().push(record);
                    }
                });
                let bound = frontier.frontier().first().copied();
                while let Some((&time, _)) = pending.first_key_value() {
                    if bound.is_some_and(|b| time >= b) {
                        break;
                    }
                    let Some(mut records) = pending.remove(&time) else {
                        break;
                    };
                    let Some(cap) = held.as_ref() else { break };
                    records.sort();
                    let hour = window.hour_of(time);
                    // A group of tables with parts in this hour is published
                    // whole; its hours in an event-time gap since its last
                    // published hour are published empty.
                    let mut jobs: Vec<(u64, Vec<&'static str>)> = Vec::new();
                    for (g, tables) in groups.iter().enumerate() {
                        if records.iter().any(|r| tables.contains(&r.table.as_str())) {
                            jobs.push((last_published[g].map_or(hour, |h| h + 1), tables.clone()));
                            last_published[g] = Some(hour);
                        }
                    }
                    let records = Arc::new(records);
                    let id = uploader.submit(Box::new(move |store| {
                        let mut out = Vec::new();
                        for (first, tables) in &jobs {
                            for h in *first..=hour {
                                for table in tables {
                                    let parts: Vec<PartRecord> = records
                                        .iter()
                                        .filter(|r| h == hour && r.table == *table)
                                        .cloned()
                                        .collect();
                                    out.push(publish(store, &window, table, h, &parts)?);
                                }
                            }
                        }
                        Ok(out)
                    }));
                    inflight.insert(id, cap.delayed(&time));
                }
                deliver(
                    &uploader,
                    &mut inflight,
                    &fault,
                    (&window, &stats),
                    |cap, manifests| {
                        // Hours count once, by the `titles` table every job writes.
                        let hours = manifests.iter().filter(|m| m.table == TITLES).count();
                        Stats::add(&stats.hours_published, hours as u64);
                        output.session(cap).give_iterator(manifests.into_iter());
                    },
                );
                crate::dataflow::follow_frontier(&mut held, bound);
            }
        },
    )
}

/// Hands on every finished upload with the capability it was submitted
/// under. A failed one becomes the job's fault and keeps its capability:
/// the frontier never passes that hour, so no `_SUCCESS` is written for it
/// and no checkpoint completes past it, in any process of the job.
fn deliver<R: Send + 'static>(
    uploader: &Uploader<R>,
    inflight: &mut HashMap<u64, Capability<Pane>>,
    fault: &FaultSlot,
    (window, stats): (&WindowSpec, &Stats),
    mut give: impl FnMut(&Capability<Pane>, R),
) {
    for (id, result) in uploader.completed() {
        match result {
            Ok(r) => {
                if let Some(cap) = inflight.remove(&id) {
                    give(&cap, r)
                }
            }
            Err(e) => {
                let hour = inflight.get(&id).map(|cap| window.hour_of(*cap.time()));
                let (dt, hh) = hour
                    .map(crate::core::time::hour_partition)
                    .unwrap_or_default();
                Stats::add(&stats.hours_held_back, 1);
                fault.set(&e.with(&format!(
                    "hour dt={dt} hour={hh} is not published and no checkpoint passes it"
                )));
            }
        }
    }
}

/// Counts one written part.
fn count_part(stats: &Stats, record: &PartRecord) {
    Stats::add(&stats.parts_written, 1);
    Stats::add(&stats.rows_written, record.rows);
    Stats::add(&stats.bytes_written, record.bytes);
}

fn publish(
    store: &dyn ObjectStore,
    window: &WindowSpec,
    table: &str,
    hour: u64,
    parts: &[PartRecord],
) -> Result<Manifest> {
    let manifest = manifest_for(window, table, hour, parts);
    let prefix = hour_prefix(table, hour);
    // Parts left by an earlier run with more workers would confuse readers
    // that glob the directory; the manifest is the truth, so remove them first.
    for key in store.list(&prefix)? {
        let name = &key[prefix.len()..];
        if name.starts_with("part-") && !parts.iter().any(|p| p.name == name) {
            store.delete(&key)?;
        }
    }
    let mut json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    json.push(b'\n');
    store.put(&format!("{prefix}{SUCCESS}"), &json)?;
    tracing::info!(table, dt = %manifest.dt, hour = %manifest.hour, parts = parts.len(), rows = manifest.rows, "published hour");
    Ok(manifest)
}

/// Writes each worker's share of the model's node tables (`title_measures`,
/// `shows`, `channels`) for each finished hour, and sends its ranking
/// candidates on to [`write_trending`].
pub fn write_model_parts<'scope>(
    hours: StreamVec<'scope, Pane, ModelHour>,
    store: Arc<dyn ObjectStore>,
    window: WindowSpec,
    stats: Arc<Stats>,
    fault: Arc<FaultSlot>,
) -> StreamVec<'scope, Pane, PartRecord> {
    let writer = Writer {
        name: "WriteModelParts",
        thread: "model-writer",
        store,
        window,
        stats,
        fault,
    };
    // The rows' buffer goes back for a later hour's rows.
    write_each(hours, writer, write_model_part, |h| give_back(h.rows))
}

/// One worker's node tables of one hour, a part per table with rows.
fn write_model_part(
    store: &dyn ObjectStore,
    window: &WindowSpec,
    hour: &ModelHour,
) -> Result<Vec<PartRecord>> {
    let (start, end) = window.window_bounds(window.last_pane_of_hour(hour.hour));
    let mut records = Vec::new();
    for table in [TITLE_MEASURES, SHOWS, CHANNELS] {
        let mut rows: Vec<&NodeRow> = hour.rows.iter().filter(|r| table_of(r) == table).collect();
        // Each stage's rows come in id order; a table drawn from both is merged.
        if !rows.is_sorted_by_key(|r| r.id) {
            rows.sort_by_key(|r| r.id);
        }
        if rows.is_empty() {
            continue;
        }
        let bytes = encode_nodes(table, &rows, start, end)?;
        let name = part_name(hour.worker);
        store.put(&format!("{}{name}", hour_prefix(table, hour.hour)), &bytes)?;
        records.push(PartRecord {
            table: table.to_string(),
            hour: hour.hour,
            name,
            rows: rows.len() as u64,
            bytes: bytes.len() as u64,
        });
    }
    Ok(records)
}

/// An hour and one worker's ranking candidates of it.
pub type Candidates = (u64, Vec<NodeRow>);

/// Takes each hour's ranking candidates out of it: the rows go on to
/// [`write_model_parts`] and the candidates (hour, rows) to
/// [`write_trending`], with no copy of the rows (an hour holds one per
/// title with views).
pub fn candidates_apart<'scope>(
    hours: StreamVec<'scope, Pane, ModelHour>,
) -> (
    StreamVec<'scope, Pane, ModelHour>,
    StreamVec<'scope, Pane, Candidates>,
) {
    let mut split = hours
        .flat_map(|mut h| {
            let candidates = std::mem::take(&mut h.candidates);
            [Ok((h.hour, candidates)), Err(h)]
        })
        .partition(2, |x| (u64::from(x.is_err()), x));
    let (Some(rows), Some(top)) = (split.pop(), split.pop()) else {
        unreachable!("partition gives as many streams as asked for")
    };
    let rows = rows.flat_map(|x| x.err());
    let top = top.flat_map(|x| x.ok());
    (rows, top)
}

/// Merges every worker's ranking candidates of an hour on worker 0 and
/// writes the hour's `trending` part once all of them have arrived.
pub fn write_trending<'scope>(
    candidates: StreamVec<'scope, Pane, Candidates>,
    store: Arc<dyn ObjectStore>,
    window: WindowSpec,
    top_k: usize,
    stats: Arc<Stats>,
    fault: Arc<FaultSlot>,
) -> StreamVec<'scope, Pane, PartRecord> {
    let worker = candidates.scope().worker();
    candidates.unary_frontier(
        Exchange::new(|_: &(u64, Vec<NodeRow>)| 0),
        "WriteTrending",
        move |initial, info| {
            let activator = worker.sync_activator_for(info.address.to_vec());
            let mut uploader: Uploader<PartRecord> =
                Uploader::spawn("trending-writer", store, activator, stats.clone());
            let mut inflight: HashMap<u64, Capability<Pane>> = HashMap::new();
            let mut held = Some(initial);
            let mut pending: BTreeMap<Pane, Vec<NodeRow>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|_cap, data| {
                    for (hour, rows) in data.drain(..) {
                        pending
                            .entry(window.last_pane_of_hour(hour))
                            .or_default()
                            .extend(rows);
                    }
                });
                let bound = frontier.frontier().first().copied();
                while let Some((&time, _)) = pending.first_key_value() {
                    if bound.is_some_and(|b| time >= b) {
                        break;
                    }
                    let (Some(rows), Some(cap)) = (pending.remove(&time), held.as_ref()) else {
                        break;
                    };
                    let hour = window.hour_of(time);
                    let id = uploader.submit(Box::new(move |store| {
                        let top = rank_all(&rows, top_k);
                        let (start, end) = window.window_bounds(time);
                        let bytes = encode_trending(&top, start, end)?;
                        let name = part_name(0);
                        store.put(&format!("{}{name}", hour_prefix(TRENDING, hour)), &bytes)?;
                        Ok(PartRecord {
                            table: TRENDING.to_string(),
                            hour,
                            name,
                            rows: top.len() as u64,
                            bytes: bytes.len() as u64,
                        })
                    }));
                    inflight.insert(id, cap.delayed(&time));
                }
                deliver(
                    &uploader,
                    &mut inflight,
                    &fault,
                    (&window, &stats),
                    |cap, record| {
                        count_part(&stats, &record);
                        output.session(cap).give(record);
                    },
                );
                crate::dataflow::follow_frontier(&mut held, bound);
            }
        },
    )
}
