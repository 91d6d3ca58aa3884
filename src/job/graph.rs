//! One worker's dataflow, on one screen: views (and restored windows) in,
//! the window or the model, hourly tables out to the store, live shards out
//! to the query API's boards.
//!
//! ```text
//!  views ──► window ──► hourly tables ─────────────┐
//!   (or, with the model)                           ├─► parts ──► publish (_SUCCESS)
//!  facts, carry, catalog ──► model ──► model hours ┘        (no store: probe only)
//!                 window / model ──► live shards ──► boards (with an endpoint)
//! ```

use std::sync::Arc;

use differential_dataflow::input::{Input, InputSession};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{Scope, StreamVec};

use super::Context;
use crate::config::MetricsConfig;
use crate::core::event::ContentId;
use crate::core::model::{give_back, CatalogEntry, Cell, Measures, Obs};
use crate::core::time::Pane;
use crate::dataflow::live::{publish_live, Boards, Publish};
use crate::dataflow::model::{model_tables, ModelHour};
use crate::dataflow::{hourly_tables, windowed_views, HourTable};
use crate::sink::snapshot::{
    candidates_apart, publish_hours, write_model_parts, write_parts, write_trending,
};
use crate::sink::snapshot::{PartRecord, TITLES};
use crate::sink::store::ObjectStore;
use crate::sink::tables::MODEL_TABLES;

/// A worker's inputs into its dataflow.
pub struct Inputs {
    /// Pre-aggregated views by title and pane (the window without the model).
    pub views: InputSession<Pane, ContentId, i64>,
    /// After a restore: windows as of the checkpoint.
    pub restored: InputSession<Pane, ContentId, i64>,
    /// The model's inputs, when the job maintains the model.
    pub model: Option<ModelInputs>,
}

/// The model's inputs: facts by title and cell, restored windows, the catalog.
pub struct ModelInputs {
    /// Views and watch time by title, cell and pane.
    pub facts: InputSession<Pane, (ContentId, Cell), Obs>,
    /// After a restore: the model's windows as of the checkpoint.
    pub carry: InputSession<Pane, ContentId, Measures>,
    /// The catalog, as a collection.
    pub catalog: InputSession<Pane, CatalogEntry, i64>,
}

/// What the stages publish for the query API: nothing without an endpoint.
fn publish(metrics: &MetricsConfig) -> Publish {
    match (metrics.enabled, metrics.provisional) {
        (false, _) => Publish::Off,
        (true, false) => Publish::Final,
        (true, true) => Publish::Provisional,
    }
}

/// Builds the worker's dataflow; the probe passes an hour once it is
/// published (or, without a store, computed).
pub fn build(
    scope: Scope<'_, Pane>,
    ctx: &Context,
    restored_at: Option<Pane>,
) -> (Inputs, ProbeHandle<Pane>) {
    let (views_in, views) = scope.new_collection::<ContentId, i64>();
    let (restored_in, carried) = scope.new_collection::<ContentId, i64>();
    let publish = publish(&ctx.job.metrics);
    let (model_in, model_hours, hours, live) = match ctx.model {
        Some(mut spec) => {
            // A stop right after a restore needs the frontier to reach it.
            spec.restored_at = restored_at;
            let (facts_in, facts) = scope.new_collection::<(ContentId, Cell), Obs>();
            let (carry_in, carry) = scope.new_collection::<ContentId, Measures>();
            let (catalog_in, catalog) = scope.new_collection::<CatalogEntry, i64>();
            let (model, hours, live) = model_tables(
                facts,
                carry,
                catalog,
                ctx.window,
                spec,
                ctx.stats.clone(),
                publish,
            );
            let inputs = ModelInputs {
                facts: facts_in,
                carry: carry_in,
                catalog: catalog_in,
            };
            (Some(inputs), Some(model), hours, live)
        }
        None => {
            let windowed = windowed_views(views, &ctx.window).concat(carried);
            let (hours, live) = hourly_tables(windowed, ctx.window, ctx.stats.clone(), publish);
            (None, None, hours, live)
        }
    };
    let boards = Boards {
        window: Some(ctx.live.clone()),
        model: ctx.model.map(|_| ctx.model_live.clone()),
        stats: ctx.stats.clone(),
    };
    publish_live(live, boards);
    let probe = match &ctx.store {
        Some(store) => write_hours(ctx, store, hours, model_hours),
        None => {
            let (probe, _) = hours.probe();
            if let Some(h) = model_hours {
                // The rows' buffer goes back for a later hour's rows.
                h.map(|h| give_back(h.rows)).probe_with(&probe);
            }
            probe
        }
    };
    let inputs = Inputs {
        views: views_in,
        restored: restored_in,
        model: model_in,
    };
    (inputs, probe)
}

/// The sink: every table's parts of an hour, then its `_SUCCESS`.
fn write_hours<'scope>(
    ctx: &Context,
    store: &Arc<dyn ObjectStore>,
    hours: StreamVec<'scope, Pane, HourTable>,
    model_hours: Option<StreamVec<'scope, Pane, ModelHour>>,
) -> ProbeHandle<Pane> {
    let (window, stats, fault) = (ctx.window, &ctx.stats, &ctx.fault);
    let mut parts: StreamVec<'scope, Pane, PartRecord> =
        write_parts(hours, store.clone(), window, stats.clone(), fault.clone());
    let mut tables = vec![vec![TITLES]];
    if let (Some(h), Some(spec)) = (model_hours, ctx.model) {
        let (h, candidates) = candidates_apart(h);
        let nodes = write_model_parts(h, store.clone(), window, stats.clone(), fault.clone());
        let top = write_trending(
            candidates,
            store.clone(),
            window,
            spec.top_k,
            stats.clone(),
            fault.clone(),
        );
        parts = parts.concat(nodes).concat(top);
        tables.push(MODEL_TABLES.to_vec());
    }
    publish_hours(
        parts,
        store.clone(),
        window,
        stats.clone(),
        fault.clone(),
        tables,
    )
    .probe()
    .0
}
