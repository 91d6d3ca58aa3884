//! Both rollups give the same model: seeded random facts, a catalog with an
//! episode moving to another channel's show mid-run, and ids the catalog
//! does not know.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use timely::dataflow::operators::{Inspect, Probe};

use super::model_tables;
use crate::core::catalog::Kind;
use crate::core::model::{CatalogEntry, Info, ModelConfig, Obs, Rollup};
use crate::core::stats::Stats;
use crate::core::time::WindowSpec;
use crate::dataflow::live::Publish;

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
            let (model, _, _) = model_tables(
                facts,
                carried,
                catalog,
                window,
                spec,
                Arc::default(),
                Publish::Off,
            );
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

/// `(hour, id, views, watch_ms, views_24h)` of every row published, for
/// `facts` (each at its pane), each worker keeping `limit` titles outside
/// the catalog. The model's counters go to `stats`; each row carries the
/// gauge of titles outside the catalog as its hour was seen.
fn publish(
    limit: usize,
    facts: Vec<(u64, (u64, u8), Obs)>,
    stats: &Arc<Stats>,
) -> Vec<(u64, u64, i64, i64, i64, i64)> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let stats = stats.clone();
    let gauge = stats.clone();
    timely::execute_directly(move |worker| {
        let window = WindowSpec::hourly();
        let spec = ModelConfig {
            score_window: std::time::Duration::from_secs(2 * 3600),
            uncataloged_limit: limit,
            ..ModelConfig::default()
        };
        let spec = spec.spec(window.slide_ms, window.panes()).expect("valid");
        let (mut facts_in, mut catalog, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (facts_in, facts) = scope.new_collection();
            let (_, carried) = scope.new_collection();
            let (catalog_in, catalog) = scope.new_collection();
            let (model, _, _) =
                model_tables(facts, carried, catalog, window, spec, stats, Publish::Off);
            let seen = model.inspect(move |h| {
                let mut rows = sink.lock().expect("not poisoned");
                let kept = gauge.model_uncataloged.load(Ordering::Relaxed);
                let row = |r: &crate::core::model::NodeRow| {
                    (h.hour, r.id, r.m.views, r.m.watch_ms, r.m.views_24h, kept)
                };
                rows.extend(h.rows.iter().map(row));
            });
            let (probe, _) = seen.probe();
            (facts_in, catalog_in, probe)
        });
        for entry in hierarchy() {
            catalog.update(entry, 1);
        }
        for (pane, key, obs) in facts {
            facts_in.advance_to(pane);
            catalog.advance_to(pane);
            facts_in.update(key, obs);
        }
        // Hour 0 (panes 0 to 59) is seen before anything leaves a window,
        // so the counters it reads are the ones of a running job.
        facts_in.advance_to(60);
        catalog.advance_to(60);
        facts_in.flush();
        catalog.flush();
        while probe.less_than(&60) {
            worker.step();
        }
    });
    let mut rows = out.lock().expect("not poisoned").clone();
    rows.sort();
    rows
}

#[test]
fn numbers_past_32_bits_leave_their_windows_whole() {
    for (views, watch_ms) in [(3, 40), (3_000_000_000, 10_000_000_000), (1, 9_000_000_000)] {
        let mut rows = publish(
            10,
            vec![(0, (10, 5), Obs { views, watch_ms })],
            &Arc::default(),
        );
        rows.retain(|r| r.1 == 10);
        let rows: Vec<_> = rows
            .into_iter()
            .map(|r| (r.0, r.1, r.2, r.3, r.4))
            .collect();
        assert_eq!(
            rows,
            [(0, 10, views, watch_ms, views), (1, 10, 0, 0, views)],
            "a title leaves the window after an hour, the score window after two"
        );
    }
    // Two panes of one hour, 2 billion views each: one score step, whose
    // sum for the title passes 32 bits.
    let big = Obs {
        views: 2_000_000_000,
        watch_ms: 1,
    };
    let mut rows = publish(
        10,
        vec![(0, (10, 5), big), (30, (10, 7), big)],
        &Arc::default(),
    );
    rows.retain(|r| r.1 == 10);
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| (r.0, r.1, r.2, r.3, r.4))
        .collect();
    let (v, w) = (4_000_000_000, 2);
    assert_eq!(rows, [(0, 10, v, w, v), (1, 10, 0, 0, v)]);
}

#[test]
fn ids_outside_the_catalog_past_the_limit_are_counted_together() {
    let fact = |id, views| (0, (id, 0), Obs { views, watch_ms: 1 });
    // Ids 104 and 103 arrive first, but the two admitted are the smallest.
    let facts = vec![
        fact(104, 1),
        fact(103, 2),
        fact(10, 4),
        fact(101, 8),
        fact(102, 16),
    ];
    let stats = Arc::new(Stats::default());
    let hour0: Vec<_> = (publish(2, facts, &stats).into_iter())
        .filter(|r| r.0 == 0 && r.1 >= 10)
        .map(|r| (r.1, r.2, r.5))
        .collect();
    let overflow = crate::core::model::OVERFLOW_TITLE;
    // Episode 10 is in the catalog, so it never counts against the limit;
    // the gauge counts 101, 102 and the overflow title while they hold views.
    let want = [(10, 4), (101, 8), (102, 16), (overflow, 3)].map(|(id, v)| (id, v, 3));
    assert_eq!(hour0, want);
    assert_eq!(
        stats.model_overflowed.load(Ordering::Relaxed),
        2,
        "the facts of 103 and 104"
    );
    let kept = stats.model_uncataloged.load(Ordering::Relaxed);
    assert_eq!(kept, 0, "every title left the score window by the end");
}

/// The catalog info the model resolves, as of each time in `at`.
fn resolved_at(changes: Vec<(u64, CatalogEntry, i64)>, at: &[u64]) -> Vec<Vec<(u64, Info)>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    timely::execute_directly(move |worker| {
        let mut catalog = worker.dataflow::<u64, _, _>(|scope| {
            let (catalog_in, catalog) = scope.new_collection();
            super::catalog_info(catalog)
                .inner
                .inspect(move |u| sink.lock().expect("not poisoned").push(*u));
            catalog_in
        });
        for (t, entry, r) in changes {
            catalog.advance_to(t);
            catalog.update(entry, r);
        }
    });
    let updates = out.lock().expect("not poisoned").clone();
    at.iter()
        .map(|&t| {
            let mut net: std::collections::BTreeMap<(u64, Info), i64> = Default::default();
            for (d, _, r) in updates.iter().filter(|(_, time, _)| *time <= t) {
                *net.entry(*d).or_default() += r;
            }
            net.into_iter()
                .filter(|(_, r)| *r != 0)
                .map(|(d, _)| d)
                .collect()
        })
        .collect()
}

#[test]
fn a_title_under_a_parent_that_cannot_have_children_has_no_catalog_info() {
    // Only channels, shows and live events have children. A show that
    // becomes a movie at time 1 keeps its episode, which then resolves to
    // nothing (an id outside the catalog: its views stay in the titles
    // table and stop rolling up) rather than to a "show" that is a movie.
    let show = (2, (Kind::Show, Some(1), None));
    let changes = vec![
        (0, (1, (Kind::Channel, None, None)), 1),
        (0, show, 1),
        (0, (3, (Kind::Episode, Some(2), None)), 1),
        (1, show, -1),
        (1, (2, (Kind::Movie, Some(1), None)), 1),
    ];
    let info = |kind, parent, show, channel| Info {
        kind,
        parent,
        show,
        channel,
        event_end: None,
    };
    let channel = (1, info(Kind::Channel, None, None, None));
    let [before, after] = <[_; 2]>::try_from(resolved_at(changes, &[0, 1])).expect("two");
    assert_eq!(
        before,
        [
            channel,
            (2, info(Kind::Show, Some(1), None, Some(1))),
            (3, info(Kind::Episode, Some(2), Some(2), Some(1))),
        ]
    );
    assert_eq!(
        after,
        [channel, (2, info(Kind::Movie, Some(1), None, Some(1)))]
    );
}
