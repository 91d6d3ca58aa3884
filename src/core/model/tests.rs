//! Unit tests of the parent module.

use super::*;

#[test]
fn measures_negate_and_split_into_their_window_parts() {
    let m = Measures {
        views: 1,
        watch_ms: 2,
        views_24h: 3,
        tier: [4, 5],
        device: [6, 7, 8, 9],
        region: std::array::from_fn(|i| 10 + i as i64),
    };
    let mut n = m;
    differential_dataflow::difference::Abelian::negate(&mut n);
    n.add(&m);
    assert!(n.is_zero());
    let mut w = m.window_part();
    w.add(&m.score_part());
    assert_eq!(w, m);
}

#[test]
fn cells_and_deltas_add_up_to_the_measures_of_events() {
    use crate::core::event::{Region, WatchEvent};
    let mut from_events = Measures::default();
    let mut from_cells = Measures::default();
    let mut cells = std::collections::HashSet::new();
    for (i, tier) in [Tier::Free, Tier::Paid].into_iter().enumerate() {
        for (j, device) in [Device::Mobile, Device::Tv, Device::Web, Device::Tablet]
            .into_iter()
            .enumerate()
        {
            for r in 0..N_REGIONS {
                let e = WatchEvent {
                    event_type: if (i + j + r) % 3 == 0 {
                        EventType::Heartbeat
                    } else {
                        EventType::StartedVideo
                    },
                    watched_ms: (i * 100 + j * 10 + r) as u32,
                    region: Region(r as u8),
                    tier,
                    device,
                    event_id: 1,
                    user_id: 2,
                    content_id: 3,
                    event_time: 1_767_225_600_000,
                };
                let cell = cell_of(&e);
                assert!((cell as usize) < N_CELLS);
                assert_eq!(cell_parts(cell), (i, j, r));
                cells.insert(cell);
                from_events.add(&Measures::of_event(&e));
                Delta::Cell {
                    cell,
                    obs: Obs::of_event(&e),
                    score: true,
                }
                .apply(&mut from_cells, true);
            }
        }
    }
    assert_eq!(cells.len(), N_CELLS);
    assert_eq!(from_cells, from_events);
    // Leaving the window takes all but the score window's views; leaving that takes the rest.
    let mut left = from_cells;
    let mut gone = from_events.window_part();
    differential_dataflow::difference::Abelian::negate(&mut gone);
    Delta::Whole(gone).apply(&mut left, true);
    Delta::Score(-from_events.views_24h).apply(&mut left, true);
    assert!(left.is_zero());
}

#[test]
fn decay_halves_per_half_life_and_scores_are_shares() {
    let clip = Info {
        kind: Kind::Clip,
        parent: Some(1),
        show: None,
        channel: Some(2),
        event_end: Some(1_000_000),
    };
    assert_eq!(decay(Some(&clip), 1_000_000, 60_000), 1.0);
    assert_eq!(decay(Some(&clip), 1_060_000, 60_000), 0.5);
    assert_eq!(decay(Some(&clip), 1_120_000, 60_000), 0.25);
    let live = Info {
        kind: Kind::Live,
        ..clip
    };
    assert_eq!(decay(Some(&live), 9_000_000, 60_000), 1.0);
    assert_eq!(score_ppm(1, 3), 333_333);
    assert_eq!(score_ppm(5, 0), 0);
}

#[test]
fn rankings_break_ties_by_id_and_merge_exactly() {
    let row = |id, views, kind| NodeRow {
        id,
        kind: Some(kind),
        parent: None,
        m: Measures {
            views,
            ..Measures::default()
        }
        .into(),
        score_ppm: 0,
        decay: 1.0,
    };
    let rows: Vec<NodeRow> = (0..50)
        .map(|i| row(i, (i % 7) as i64, Kind::Movie))
        .collect();
    let all = rank_all(&rows, 3);
    let movies: Vec<_> = all
        .iter()
        .filter(|e| e.category == "movie" && e.region.is_empty())
        .map(|e| e.id)
        .collect();
    assert_eq!(movies, vec![6, 13, 20]);
    // Two shards' top-3 lists, merged and re-ranked, give the same answer.
    let (a, b): (Vec<_>, Vec<_>) = rows.iter().cloned().partition(|r| r.id % 2 == 0);
    let pick = |part: &[NodeRow]| -> Vec<NodeRow> {
        let top = rank_all(part, 3);
        part.iter()
            .filter(|r| top.iter().any(|e| e.id == r.id))
            .cloned()
            .collect()
    };
    let mut merged = pick(&a);
    merged.extend(pick(&b));
    assert_eq!(rank_all(&merged, 3), all);
}

#[test]
fn the_bounded_ranking_keeps_what_a_whole_sort_keeps() {
    let mut rng = crate::core::rng::SplitMix64::new(18);
    for round in 0..500 {
        let k = 1 + rng.below(12) as usize;
        let n = rng.below(200) as usize;
        // Few distinct values, so ties (broken by id) are common; some not positive.
        let values: Vec<(f64, ContentId)> = (0..n as u64)
            .map(|id| (rng.below(9) as f64 - 2.0, rng.below(1000) * 1000 + id))
            .collect();
        let mut best = Best::new(k);
        for &(v, id) in &values {
            best.offer(v, id, ());
        }
        let got: Vec<_> = best
            .into_sorted()
            .into_iter()
            .map(|(v, id, ())| (v, id))
            .collect();
        let mut want: Vec<_> = values.into_iter().filter(|(v, _)| *v > 0.0).collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        want.truncate(k);
        assert_eq!(got, want, "round {round}, k {k}");
    }
}

#[test]
fn ranking_every_list_at_once_agrees_with_each_ranking_alone() {
    let mut rng = crate::core::rng::SplitMix64::new(19);
    let kinds = [None, Some(Kind::Channel)]
        .into_iter()
        .chain(Kind::ALL.map(Some))
        .collect::<Vec<_>>();
    for round in 0..50 {
        let k = 1 + rng.below(5) as usize;
        let rows: Vec<NodeRow> = (0..rng.below(300))
            .map(|id| {
                // Every view is in one region (what a rank skips relies on).
                let mut m = Measures::default();
                m.region = std::array::from_fn(|_| rng.below(4) as i64 * rng.below(2) as i64);
                m.views = m.region.iter().sum();
                NodeRow {
                    id: rng.below(50) * 1000 + id,
                    kind: kinds[rng.below(kinds.len() as u64) as usize],
                    parent: None,
                    m: m.into(),
                    score_ppm: rng.below(5) as i64,
                    decay: [1.0, 0.5, 0.0][rng.below(3) as usize],
                }
            })
            .collect();
        let (all, picked) = rank_picked(&rows, k);
        assert_eq!(rank_all(&rows, k), all);
        // Each list, as `top` ranks it alone.
        let mut want = Vec::new();
        for cat in CATEGORIES {
            for region in std::iter::once(None).chain((0..N_REGIONS).map(Some)) {
                for (rank, (value, row)) in top(&rows, cat, region, k).into_iter().enumerate() {
                    want.push(TopEntry {
                        category: cat.to_string(),
                        region: region.map_or(String::new(), |r| REGIONS[r].to_string()),
                        rank: rank + 1,
                        id: row.id,
                        value,
                    });
                }
            }
        }
        assert_eq!(all, want, "round {round}");
        // The picked rows are the ranked ones, once each, in row order.
        let ranked: std::collections::HashSet<ContentId> = all.iter().map(|e| e.id).collect();
        let rows_ranked: Vec<usize> = (0..rows.len())
            .filter(|&i| ranked.contains(&rows[i].id))
            .collect();
        let distinct: std::collections::HashSet<ContentId> =
            picked.iter().map(|&i| rows[i].id).collect();
        assert_eq!(distinct, ranked, "round {round}");
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        assert!(picked.iter().all(|i| rows_ranked.contains(i)));
    }
}
