//! Exact, real-time content popularity on Timely and Differential Dataflow.
//!
//! # Layout
//!
//! ```text
//!  source ──► judge ──► pre-aggregate ──► exchange by content ──► window / model ──► hourly tables ──► snapshots
//!  (kafka,    (bad, late,  (content, pane)                         (+n at pane,       (frontier        (Parquet +
//!   file,      skewed →                                              −n a window        passes an hour)  _SUCCESS)
//!   generator) dead letter)                                          later)
//! ```
//!
//! Layers import downward only (`scripts/shape_check.py` checks it):
//!
//! - [`core`]: time, events, the catalog, the partition clock, the model's
//!   values, errors and counters. No I/O.
//! - [`config`]: the job file's sections and their layering; imports `core` only.
//! - [`dataflow`]: the collections and operators (window, hourly tables,
//!   model stages, live boards); no I/O, no knowledge of sources or stores.
//! - [`source`]: file, generator and Kafka sources; the catalog feed.
//! - [`sink`]: Parquet snapshots and manifests (layout and readers), local
//!   and S3 stores, dead letters.
//! - [`checkpoint`]: per-partition offsets, clocks and pane counts; restore.
//! - [`serve`]: the HTTP endpoint (metrics, health, query API, page).
//! - [`rank`]: the downstream ranker over published hours.
//! - [`job`]: the only layer that knows every other: opens what the
//!   configuration names, builds each worker's dataflow ([`job::graph`]) and
//!   drives it.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod config;
pub mod core;
pub mod dataflow;
pub mod job;
pub mod rank;
pub mod serve;
pub mod sink;
pub mod source;
