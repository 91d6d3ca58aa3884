//! Both rollups give the same model: seeded random facts, a catalog with an
//! episode moving to another channel's show mid-run, and ids the catalog
//! does not know.

use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use timely::dataflow::operators::Inspect;

use super::model_tables;
use crate::core::catalog::Kind;
use crate::core::model::{CatalogEntry, ModelConfig, Obs, Rollup};
use crate::core::time::WindowSpec;

/// `(hour, id, measures)` of every row the model published, sorted.
type Published = Vec<(u64, u64, String)>;

fn hierarchy() -> Vec<CatalogEntry> {
    let mut c = vec![
        (1, (Kind::Channel, None, None)),
        (2, (Kind::Show, Some(1), None)),
        (3, (Kind::Show, Some(1), None)),
        (4, (Kind::Channel, None, None)),
        (5, (Kind::Show, Some(4), None)),
        (30, (Kind::Movie, Some(4), None)),
    ];
    c.extend((10..20).map(|e| (e, (Kind::Episode, Some(2 + e % 2), None))));
    c
}

fn run(rollup: Rollup, seed: u64) -> Published {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let window = WindowSpec::hourly();
        let spec = ModelConfig {
            rollup,
            score_window: std::time::Duration::from_secs(2 * 3600),
            ..ModelConfig::default()
        };
        let spec = spec.spec(window.slide_ms, window.panes()).expect("valid");
        let sink = sink.clone();
        let (mut facts, mut catalog) = worker.dataflow::<u64, _, _>(|scope| {
            let (facts_in, facts) = scope.new_collection();
            let (_, carried) = scope.new_collection();
            let (catalog_in, catalog) = scope.new_collection();
            let (model, _, _) =
                model_tables(facts, carried, catalog, window, spec, Arc::default(), false);
            model.inspect(move |h| {
                let mut rows = sink.lock().expect("not poisoned");
                rows.extend(h.rows.iter().map(|r| (h.hour, r.id, format!("{:?}", r.m))));
            });
            (facts_in, catalog_in)
        });
        if worker.index() == 0 {
            for entry in hierarchy() {
                catalog.update(entry, 1);
            }
        }
        let mut state = seed + worker.index() as u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        for pane in 0..200u64 {
            if pane == 70 && worker.index() == 0 {
                // Episode 10 moves from show 2 (channel 1) to show 5 (channel 4).
                catalog.update((10, (Kind::Episode, Some(2), None)), -1);
                catalog.update((10, (Kind::Episode, Some(5), None)), 1);
            }
            catalog.advance_to(pane);
            facts.advance_to(pane);
            for _ in 0..next() % 8 {
                let ids = [1, 2, 5, 10, 11, 12, 13, 17, 30, 99];
                let id = ids[(next() % ids.len() as u64) as usize];
                let cell = (next() % 16) as u8;
                let views = (next() % 3) as i64;
                let obs = Obs {
                    views,
                    watch_ms: (next() % 90_000) as i64,
                };
                facts.update((id, cell), obs);
            }
        }
    })
    .expect("runs");
    let mut rows = out.lock().expect("not poisoned").clone();
    rows.sort();
    rows
}

#[test]
fn the_differential_rollup_equals_the_routes() {
    for seed in [1, 7, 42] {
        let routes = run(Rollup::Routes, seed);
        assert!(routes.len() > 20, "rows in several hours: {}", routes.len());
        let last = routes.iter().map(|r| r.0).max();
        assert!(last >= Some(2), "hours past the move at pane 70: {last:?}");
        assert_eq!(run(Rollup::Differential, seed), routes, "seed {seed}");
    }
}
