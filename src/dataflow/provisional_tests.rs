//! The provisional counts of both window stages (the window alone, and the
//! model's title stage) against a recount of every view the stage was given:
//! the final counts hold the panes before the frontier, the provisional ones
//! every pane up to the newest, both over the window that ends there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::input::{Input, InputSession};
use timely::dataflow::operators::Inspect;

use super::live::{LiveShard, LiveUpdate, Publish};
use super::model::model_tables;
use super::{hourly_tables, windowed_views};
use crate::core::event::ContentId;
use crate::core::model::{ModelConfig, Obs};
use crate::core::rng::SplitMix64;
use crate::core::time::{Pane, WindowSpec};

/// Seeded views `(title, pane, n)` over panes `0..200`.
fn views(seed: u64) -> Vec<(ContentId, Pane, i64)> {
    let mut rng = SplitMix64::new(seed);
    (0..3000)
        .map(|_| (1 + rng.below(30), rng.below(200), 1 + rng.below(3) as i64))
        .collect()
}

/// Views per title of the panes `end - width < p <= end`, nonzero only.
fn recount(views: &[(ContentId, Pane, i64)], end: Pane, width: Pane) -> BTreeMap<ContentId, i64> {
    let mut counts = BTreeMap::new();
    for &(id, _, n) in views.iter().filter(|v| v.1 <= end && v.1 + width > end) {
        *counts.entry(id).or_insert(0) += n;
    }
    counts
}

/// What a shard shows: its final counts, and its final plus provisional ones.
fn shown(
    shard: &LiveShard,
) -> (
    Pane,
    BTreeMap<ContentId, i64>,
    Pane,
    BTreeMap<ContentId, i64>,
) {
    let finals: BTreeMap<_, _> = shard.counts.iter().map(|(k, v)| (*k, *v)).collect();
    let early = shard
        .early
        .as_deref()
        .expect("provisional counts are published");
    let mut all = finals.clone();
    for (id, v) in &early.delta {
        *all.entry(*id).or_insert(0) += v;
    }
    all.retain(|_, v| *v != 0);
    (shard.as_of, finals, early.as_of, all)
}

/// Runs a stage on `views`, the input held at pane `frontier`, and returns
/// the last window shard it published once it showed the newest pane.
fn run(model: bool, views: Vec<(ContentId, Pane, i64)>, frontier: Pane) -> LiveShard {
    let seen: Arc<Mutex<Vec<LiveShard>>> = Arc::default();
    let (sink, watch) = (seen.clone(), seen.clone());
    let newest = views.iter().map(|v| v.1).max().unwrap_or(0);
    timely::execute_directly(move |worker| {
        let window = WindowSpec::hourly();
        let keep = move |u: &LiveUpdate| {
            if let LiveUpdate::Window { shard, .. } = u {
                sink.lock().expect("not poisoned").push(shard.clone());
            }
        };
        let (mut plain, mut facts): (InputSession<Pane, ContentId, i64>, _) = worker
            .dataflow::<Pane, _, _>(|scope| {
                let (plain_in, plain) = scope.new_collection();
                let (facts_in, facts) = scope.new_collection();
                let (_, carried) = scope.new_collection();
                let (_, catalog) = scope.new_collection();
                let live = if model {
                    let spec = ModelConfig::default().spec(window.slide_ms, window.panes());
                    let spec = spec.expect("valid");
                    let stats = Arc::default();
                    model_tables(
                        facts,
                        carried,
                        catalog,
                        window,
                        spec,
                        stats,
                        Publish::Provisional,
                    )
                    .2
                } else {
                    let windowed = windowed_views(plain, &window);
                    hourly_tables(windowed, window, Arc::default(), Publish::Provisional).1
                };
                live.inspect(keep);
                (plain_in, facts_in)
            });
        for (id, pane, n) in views {
            plain.update_at(id, pane, n);
            let obs = Obs {
                views: n,
                watch_ms: 1000 * n,
            };
            facts.update_at((id, (id % 7) as u8), pane, obs);
        }
        plain.advance_to(frontier);
        facts.advance_to(frontier);
        plain.flush();
        facts.flush();
        // Step until the newest pane is shown, then a while longer: a
        // shard sent before every update arrived is sent again (a second later).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut settled: Option<Instant> = None;
        while settled.is_none_or(|at| at.elapsed() < Duration::from_millis(1500)) {
            assert!(Instant::now() < deadline, "no shard showed pane {newest}");
            worker.step();
            let last = watch.lock().expect("not poisoned").last().cloned();
            let shows_newest = last.is_some_and(|s| s.early.is_some_and(|e| e.as_of == newest));
            if shows_newest && settled.is_none() {
                settled = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let last = seen.lock().expect("not poisoned").last().cloned();
    last.expect("a shard was published")
}

fn check(model: bool, seed: u64, frontier: Pane) {
    let views = views(seed);
    let shard = run(model, views.clone(), frontier);
    let width = WindowSpec::hourly().panes();
    let (as_of, finals, newest, all) = shown(&shard);
    assert_eq!(
        as_of,
        frontier - 1,
        "final as of the pane before the frontier"
    );
    let before: Vec<_> = views.iter().copied().filter(|v| v.1 < frontier).collect();
    assert_eq!(finals, recount(&before, as_of, width), "final counts");
    assert_eq!(
        newest, 199,
        "the provisional window ends at the newest pane"
    );
    assert_eq!(all, recount(&views, newest, width), "provisional counts");
}

#[test]
fn provisional_counts_of_the_window_equal_a_recount_of_every_view_received() {
    // Lateness shorter than the window, then longer (views that entered
    // and left before the newest pane are still pending).
    for (seed, frontier) in [(1, 150), (2, 50)] {
        check(false, seed, frontier);
    }
}

#[test]
fn provisional_counts_of_the_model_equal_a_recount_of_every_view_received() {
    for (seed, frontier) in [(3, 150), (4, 50)] {
        check(true, seed, frontier);
    }
}
