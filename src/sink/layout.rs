//! The layout of published hours in the store, and its readers: no
//! timely here, so the downstream ranker and tests read hours through it.
//!
//! `<table>/dt=YYYY-MM-DD/hour=HH/part-<worker>.parquet`, then `_SUCCESS`
//! (the hour's manifest: every part with its rows and size) last.

use serde::{Deserialize, Serialize};

use super::parquet::TitleRow;
use super::store::ObjectStore;
use crate::core::error::{Error, Result};
use crate::core::time::{hour_partition, rfc3339, WindowSpec, HOUR_MS};

/// Name of the per-view-count table.
pub const TITLES: &str = "titles";

/// Name of the manifest object.
pub const SUCCESS: &str = "_SUCCESS";

/// `table/dt=YYYY-MM-DD/hour=HH/`
pub fn hour_prefix(table: &str, hour: u64) -> String {
    let (dt, hh) = hour_partition(hour);
    format!("{table}/dt={dt}/hour={hh}/")
}

/// File name of worker `worker`'s part.
pub fn part_name(worker: usize) -> String {
    format!("part-{worker:05}.parquet")
}

/// What `WriteParts` tells `PublishHours` about one part.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartRecord {
    /// The table.
    pub table: String,
    /// Hours since the epoch.
    pub hour: u64,
    /// File name within the hour's directory.
    pub name: String,
    /// Rows in the part.
    pub rows: u64,
    /// Size of the part in bytes.
    pub bytes: u64,
}

/// One part as listed in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    /// File name within the hour's directory.
    pub name: String,
    /// Rows in the part.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// The `_SUCCESS` manifest of one hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Table name.
    pub table: String,
    /// `YYYY-MM-DD`.
    pub dt: String,
    /// `HH`.
    pub hour: String,
    /// Start of the counted window (RFC 3339).
    pub window_start: String,
    /// End of the counted window (exclusive, RFC 3339).
    pub window_end: String,
    /// The watermark the job had passed when it declared the hour final.
    pub watermark: String,
    /// The parts, by name.
    pub parts: Vec<ManifestPart>,
    /// Total rows over all parts.
    pub rows: u64,
}

/// Builds the manifest of `hour` from its parts.
pub fn manifest_for(window: &WindowSpec, table: &str, hour: u64, parts: &[PartRecord]) -> Manifest {
    let (dt, hh) = hour_partition(hour);
    let (start, end) = window.window_bounds(window.last_pane_of_hour(hour));
    Manifest {
        table: table.to_string(),
        dt,
        hour: hh,
        window_start: rfc3339(start),
        window_end: rfc3339(end),
        watermark: rfc3339(hour as i64 * HOUR_MS + HOUR_MS),
        parts: parts
            .iter()
            .map(|p| ManifestPart {
                name: p.name.clone(),
                rows: p.rows,
                bytes: p.bytes,
            })
            .collect(),
        rows: parts.iter().map(|p| p.rows).sum(),
    }
}

/// Reads one published hour: its manifest and all rows, or `None` if unpublished.
pub fn read_hour(store: &dyn ObjectStore, hour: u64) -> Result<Option<(Manifest, Vec<TitleRow>)>> {
    let read = read_parts(store, TITLES, hour, super::parquet::decode_titles)?;
    Ok(read.map(|(manifest, mut rows)| {
        rows.sort();
        (manifest, rows)
    }))
}

/// Reads one published hour of any table as named values, or `None` if unpublished.
pub fn read_table_hour(
    store: &dyn ObjectStore,
    table: &str,
    hour: u64,
) -> Result<Option<(Manifest, Vec<super::tables::Row>)>> {
    read_parts(store, table, hour, super::tables::decode_rows)
}

/// An hour's manifest and the rows of every part it lists, each part
/// decoded by `decode`; `None` if the hour is not published.
fn read_parts<R>(
    store: &dyn ObjectStore,
    table: &str,
    hour: u64,
    decode: impl Fn(Vec<u8>) -> Result<Vec<R>>,
) -> Result<Option<(Manifest, Vec<R>)>> {
    let prefix = hour_prefix(table, hour);
    let Some(bytes) = store.get(&format!("{prefix}{SUCCESS}"))? else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Input(format!("{prefix}{SUCCESS}: {e}")))?;
    // The manifest's row count is a claim, not a bound: grow as rows arrive.
    let mut rows = Vec::new();
    for part in &manifest.parts {
        let key = format!("{prefix}{}", part.name);
        let bytes = store
            .get(&key)?
            .ok_or_else(|| Error::Input(format!("{key} is listed in the manifest but missing")))?;
        rows.extend(decode(bytes)?);
    }
    Ok(Some((manifest, rows)))
}

/// Hours (since the epoch) that have a manifest in `store`, sorted.
pub fn published_hours(store: &dyn ObjectStore) -> Result<Vec<u64>> {
    published_table_hours(store, TITLES)
}

/// Hours of `table` that have a manifest in `store`, sorted.
pub fn published_table_hours(store: &dyn ObjectStore, table: &str) -> Result<Vec<u64>> {
    let mut hours = Vec::new();
    for key in store.list(&format!("{table}/"))? {
        let Some(rest) = key.strip_suffix(&format!("/{SUCCESS}")) else {
            continue;
        };
        let mut dt = None;
        let mut hh = None;
        for seg in rest.split('/') {
            if let Some(v) = seg.strip_prefix("dt=") {
                dt = Some(v);
            }
            if let Some(v) = seg.strip_prefix("hour=") {
                hh = v.parse::<u32>().ok();
            }
        }
        if let (Some(dt), Some(hh)) = (dt, hh) {
            if let Some(h) = crate::core::time::parse_hour(dt, hh) {
                hours.push(h);
            }
        }
    }
    hours.sort_unstable();
    Ok(hours)
}
