//! The popularity dataflow: plain functions from collections to collections.
//!
//! Nothing here does I/O or knows where events come from or where hours
//! go: sources hand pre-aggregated `(content, pane, n)` updates in as a
//! differential collection, and finished hours leave as a timely stream.
//!
//! ```text
//! views ──► windowed_views ──► hourly_tables ──► (sink)
//!  +n@pane   +n@pane, −n@pane+W   per-worker, exchanged by content
//! ```

pub mod hourly;
pub mod live;
pub mod model;
pub mod window;

use differential_dataflow::VecCollection;

use crate::core::event::ContentId;
use crate::core::time::Pane;

/// View counts as a collection: the multiplicity of `content` at a time is its count.
pub type Views<'scope> = VecCollection<'scope, Pane, ContentId, i64>;

/// Routes a content id to a worker; every operator that shards by content uses it.
pub fn shard(content: ContentId) -> u64 {
    crate::core::rng::mix(content)
}

pub use hourly::{hourly_tables, HourTable};

/// Views by title: a window's counts. Hashed with rustc-hash, which hashes
/// an id in one step (the standard hasher costs more than the update).
pub type Counts = std::collections::HashMap<ContentId, i64, rustc_hash::FxBuildHasher>;

/// Moves a held capability up to the input frontier `bound`, or drops it when
/// the input is done: operators that emit "when the frontier passes a time"
/// keep the least capability they may still need, and no more.
pub fn follow_frontier(
    held: &mut Option<timely::dataflow::operators::Capability<Pane>>,
    bound: Option<Pane>,
) {
    match bound {
        Some(b) => {
            if let Some(cap) = held.as_mut() {
                if *cap.time() < b {
                    cap.downgrade(&b);
                }
            }
        }
        None => *held = None,
    }
}
pub use window::windowed_views;

#[cfg(test)]
mod provisional_tests;
