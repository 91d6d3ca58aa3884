//! The provisional counts of both window stages (the window alone, and the
//! model's title stage) against a recount of every view the stage was given:
//! the final counts hold the panes before the frontier, the provisional ones
//! every pane up to the newest, both over the window that ends there.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
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
use crate::core::stats::Stats;
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

/// What the shards show together: the final counts' pane and counts, and
/// the provisional counts' pane and counts (final plus provisional).
fn shown(shards: &BTreeMap<usize, LiveShard>) -> (Pane, Counted, Pane, Counted) {
    let (mut finals, mut all) = (Counted::new(), Counted::new());
    for shard in shards.values() {
        let early = shard
            .early
            .as_deref()
            .expect("provisional counts are published");
        let counts = shard.counts.iter().map(|(k, v)| (k, v, true));
        for (id, v, fin) in counts.chain(early.delta.iter().map(|(k, v)| (k, v, false))) {
            if fin {
                *finals.entry(*id).or_insert(0) += v;
            }
            *all.entry(*id).or_insert(0) += v;
        }
    }
    all.retain(|_, v| *v != 0);
    let pane = |f: fn(&LiveShard) -> Pane| shards.values().map(f).min().unwrap_or(0);
    let as_of = pane(|s| s.as_of);
    let newest = pane(|s| s.early.as_ref().map_or(0, |e| e.as_of));
    (as_of, finals, newest, all)
}

type Counted = BTreeMap<ContentId, i64>;

/// Runs a stage on `workers` workers with `views` (fed by worker 0), the
/// input held at pane `frontier`, and returns each worker's last window
/// shard once every worker showed the newest pane.
fn run(
    model: bool,
    workers: usize,
    views: Vec<(ContentId, Pane, i64)>,
    frontier: Pane,
) -> BTreeMap<usize, LiveShard> {
    let seen: Arc<Mutex<BTreeMap<usize, LiveShard>>> = Arc::default();
    let newest = views.iter().map(|v| v.1).max().unwrap_or(0);
    // As the driver does: the newest pane the process has taken.
    let stats: Arc<Stats> = Arc::default();
    stats.taken_pane.store(newest, Ordering::Relaxed);
    let shared = seen.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let window = WindowSpec::hourly();
        let sink = shared.clone();
        let keep = move |u: &LiveUpdate| {
            if let LiveUpdate::Window { worker, shard } = u {
                sink.lock()
                    .expect("not poisoned")
                    .insert(*worker, shard.clone());
            }
        };
        let stats = stats.clone();
        let (mut plain, mut facts): (InputSession<Pane, ContentId, i64>, _) = worker
            .dataflow::<Pane, _, _>(|scope| {
                let (plain_in, plain) = scope.new_collection();
                let (facts_in, facts) = scope.new_collection();
                let (_, carried) = scope.new_collection();
                let (_, catalog) = scope.new_collection();
                let live = if model {
                    let spec = ModelConfig::default().spec(window.slide_ms, window.panes());
                    let spec = spec.expect("valid");
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
                    hourly_tables(windowed, window, stats, Publish::Provisional).1
                };
                live.inspect(keep);
                (plain_in, facts_in)
            });
        // The panes before the frontier, then the frontier, then the later
        // panes at the same input time: as a job's driver feeds a running
        // dataflow while the watermark stands still.
        let mine = views.iter().filter(|_| worker.index() == 0);
        let (early, late): (Vec<_>, Vec<_>) = mine.partition(|v| v.1 < frontier);
        for part in [early, late] {
            for &(id, pane, n) in part {
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
        }
        // Step until every worker shows the newest pane, then a while
        // longer: a shard sent before every update arrived is sent again
        // (a second later).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut settled: Option<Instant> = None;
        while settled.is_none_or(|at| at.elapsed() < Duration::from_millis(1500)) {
            assert!(Instant::now() < deadline, "no shard showed pane {newest}");
            worker.step();
            let all = shared.lock().expect("not poisoned").clone();
            let shows = |s: &LiveShard| s.early.as_ref().is_some_and(|e| e.as_of == newest);
            if all.len() == workers && all.values().all(shows) && settled.is_none() {
                settled = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .expect("workers run");
    let last = seen.lock().expect("not poisoned").clone();
    last
}

fn check(model: bool, workers: usize, seed: u64, frontier: Pane) {
    let views = views(seed);
    let shards = run(model, workers, views.clone(), frontier);
    let width = WindowSpec::hourly().panes();
    let (as_of, finals, newest, all) = shown(&shards);
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
    // and left before the newest pane are still pending); one worker, two.
    for (seed, frontier, workers) in [(1, 150, 1), (2, 50, 1), (3, 120, 2)] {
        check(false, workers, seed, frontier);
    }
}

#[test]
fn provisional_counts_of_the_model_equal_a_recount_of_every_view_received() {
    for (seed, frontier, workers) in [(4, 150, 1), (5, 50, 1), (6, 120, 2)] {
        check(true, workers, seed, frontier);
    }
}
