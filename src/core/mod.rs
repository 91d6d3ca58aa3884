//! The bottom layer: the data model and the rules every other layer shares.
//! Nothing here does I/O or knows of timely, sources or stores; the model's
//! values implement differential's difference traits (which must live with
//! the types), and that is the only dataflow crate this layer names.
//!
//! - [`time`]: event time, panes, hours and the window geometry.
//! - [`event`]: a watch event and its decoding and validation.
//! - [`catalog`]: the title hierarchy (episode → show → channel) and its buckets.
//! - [`clock`]: a partition's watermark, corroborated against bad clocks.
//! - [`model`]: what is measured per title, rollups, scores and rankings.
//! - [`error`]: errors that say whose fault they are; [`stats`]: the counters;
//!   [`freshness`]: sampled delays from an event's arrival to its view shown.
//! - [`rng`]: the small deterministic generator behind seeds; [`backoff`]: waits between retries.

pub mod backoff;
pub mod catalog;
pub mod clock;
pub mod error;
pub mod event;
pub mod freshness;
pub mod model;
pub mod rng;
pub mod stats;
pub mod time;
