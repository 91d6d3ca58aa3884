//! The job layer, the only one that knows every other: it opens the
//! sources and stores the configuration names, builds each worker's
//! dataflow, and runs the loop that feeds it.
//!
//! - [`context`]: what the workers of a process share; opening stores and sources.
//! - [`cluster`]: running the workers, in one process or as part of a cluster.
//! - `network`: the connections between a cluster's processes, and their silence bound.
//! - `worker`: one worker's start: restore, build ([`graph`]), re-insert, drive.
//! - [`graph`]: the dataflow of one worker, on one screen.
//! - `driver`: the per-worker feeding loop and how a batch is judged.
//! - `restore`, `model_feed`: checkpoint state and the model's inputs.

pub mod cluster;
pub mod context;
mod driver;
pub mod graph;
mod model_feed;
mod network;
mod restore;
mod worker;

pub use cluster::execute;
pub use context::{open_store, Context, DeadLetterTarget};
