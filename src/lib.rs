//! Exact, real-time content popularity on Timely and Differential Dataflow.
//!
//! # Layout
//!
//! ```text
//!  source ──► decode ──► pre-aggregate ──► exchange by content ──► window ──► hourly tables ──► snapshots
//!  (file,     (bad →      (content, pane)                          (+n at pane,   (frontier        (Parquet +
//!   generator) dead letter)                                          −n a window    passes an hour)  _SUCCESS)
//!                                                                     later)
//! ```
//!
//! - [`event`], [`catalog`], [`time`]: the data model and event-time arithmetic.
//! - [`generator`]: deterministic synthetic traffic; [`source`]: file, generator and Kafka sources.
//! - [`dataflow`]: the collections and operators; no I/O, no knowledge of sources or stores.
//! - [`sink`]: Parquet snapshots and manifests, local and S3 stores, dead letters.
//! - [`pipeline`]: the per-worker driver that connects them; [`config`]: job files.
//! - [`checkpoint`]: per-partition offsets, watermarks and pane counts; restore.
//! - [`serve`]: the HTTP endpoint (metrics, health, query API, page); [`stats`]: the counters behind it.
//! - [`rank`]: the downstream ranker over published hours.
//! - [`oracle`]: a from-scratch recount, what the tests compare against.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod config;
pub mod core;
pub mod dataflow;
pub mod job;
pub mod oracle;
pub mod rank;
pub mod serve;
pub mod sink;
pub mod source;
