//! Unit tests of the parent module.

use super::*;

const MIN: Millis = 60_000;
const HOUR: Millis = 3_600_000;
/// 2026-01-01T00:00Z.
const DAY0: Millis = 1_767_225_600_000;

fn rule() -> ClockRule {
    ClockRule {
        lateness_ms: 2 * MIN,
        max_jump_ms: 10 * MIN,
        quorum: 4,
        patience: 20,
    }
}

fn run(times: &[Millis]) -> (Vec<Verdict>, PartitionClock<usize>) {
    let mut clock = PartitionClock::new(rule(), WindowSpec::hourly());
    let mut out = Vec::new();
    for (i, t) in times.iter().enumerate() {
        clock.offer(*t, i, &mut out);
    }
    clock.finish(&mut out);
    out.sort_by_key(|d| d.0);
    assert_eq!(out.len(), times.len(), "every record gets one verdict");
    (out.into_iter().map(|d| d.2).collect(), clock)
}

#[test]
fn one_record_hours_ahead_does_not_move_the_watermark() {
    let mut times: Vec<Millis> = (0..60).map(|k| DAY0 + k * 10_000).collect();
    times.insert(30, DAY0 + 3 * HOUR);
    let (verdicts, clock) = run(&times);
    assert!(matches!(verdicts[30], Verdict::Skew { ahead_ms } if ahead_ms > 2 * HOUR));
    assert_eq!(
        verdicts.iter().filter(|v| **v == Verdict::Accept).count(),
        60
    );
    assert_eq!(clock.base(), Some(DAY0 + 59 * 10_000));
}

#[test]
fn a_genuine_jump_across_days_moves_it_within_quorum_records() {
    let mut times: Vec<Millis> = (0..10).map(|k| DAY0 + k * MIN).collect();
    times.extend((0..10).map(|k| DAY0 + 2 * 24 * HOUR + k * MIN));
    let (verdicts, clock) = run(&times);
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Accept),
        "{verdicts:?}"
    );
    assert_eq!(clock.base(), Some(DAY0 + 2 * 24 * HOUR + 9 * MIN));
}

#[test]
fn late_records_say_by_how_much() {
    let times = [
        DAY0,
        DAY0 + MIN,
        DAY0 + 2 * MIN,
        DAY0 + 3 * MIN,
        DAY0 + 10 * MIN,
        DAY0,
    ];
    let (verdicts, _) = run(&times);
    // Watermark 10 min - 2 min lateness = 8 min; the record at 0 is 8 min behind.
    assert_eq!(verdicts[5], Verdict::Late { behind_ms: 8 * MIN });
}

#[test]
fn lateness_is_judged_by_pane_at_an_hour_boundary() {
    // Base 01:02:30 → watermark 01:00:30, in pane 01:00; a record at 01:00:00
    // is in the watermark's pane (on time), one at 00:59:59 is in the last
    // pane of the previous hour (late).
    let h1 = DAY0 + HOUR;
    let times = [
        h1,
        h1 + 1,
        h1 + 2,
        h1 + 3,
        h1 + 2 * MIN + 30_000,
        h1,
        h1 - 1,
    ];
    let (verdicts, _) = run(&times);
    assert_eq!(verdicts[5], Verdict::Accept);
    assert_eq!(verdicts[6], Verdict::Late { behind_ms: 30_001 });
}

#[test]
fn a_far_ahead_record_at_the_start_is_held_not_trusted() {
    let mut times = vec![DAY0 + 20 * HOUR];
    times.extend((0..40).map(|k| DAY0 + k * 5_000));
    let (verdicts, clock) = run(&times);
    assert!(matches!(verdicts[0], Verdict::Skew { .. }));
    assert!(verdicts[1..].iter().all(|v| *v == Verdict::Accept));
    assert_eq!(clock.base(), Some(DAY0 + 39 * 5_000));
}

#[test]
fn scattered_skewed_clocks_never_corroborate() {
    let mut times: Vec<Millis> = (0..400).map(|k| DAY0 + k * 1_000).collect();
    // Three bad clocks, each far apart: a quorum of 4 is never reached.
    for (at, ahead) in [(50, HOUR), (52, 5 * HOUR), (54, 20 * HOUR)] {
        times[at] = DAY0 + ahead;
    }
    let (verdicts, _) = run(&times);
    let skew = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Skew { .. }))
        .count();
    assert_eq!(skew, 3);
    assert_eq!(
        verdicts.iter().filter(|v| **v == Verdict::Accept).count(),
        397
    );
}

#[test]
fn one_consistent_bad_clock_among_many_honest_ones_is_outvoted() {
    // Every third record comes from a client 3 hours ahead: quorum is
    // reached but never the share.
    let times: Vec<Millis> = (0..300)
        .map(|k| DAY0 + k * 1_000 + if k % 3 == 1 { 3 * HOUR } else { 0 })
        .collect();
    let (verdicts, clock) = run(&times);
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Skew { .. }))
            .count(),
        100
    );
    assert!(clock.base().is_some_and(|b| b < DAY0 + HOUR));
}

#[test]
fn a_held_record_is_accepted_when_the_base_catches_up() {
    let mut times: Vec<Millis> = (0..5).map(|k| DAY0 + k * MIN).collect();
    times.push(DAY0 + 15 * MIN); // 11 minutes ahead of the base at 4 min
    times.extend((5..12).map(|k| DAY0 + k * MIN)); // the base reaches 11 min
    let (verdicts, _) = run(&times);
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Accept),
        "{verdicts:?}"
    );
}

#[test]
fn a_short_partition_starts_with_what_it_has() {
    let (verdicts, clock) = run(&[DAY0 + MIN, DAY0]);
    assert!(verdicts.iter().all(|v| *v == Verdict::Accept));
    assert_eq!(clock.base(), Some(DAY0 + MIN));
}

#[test]
fn a_jump_at_midnight_lands_in_the_new_day() {
    let end_of_day = DAY0 + 24 * HOUR - MIN;
    let mut times: Vec<Millis> = (0..6).map(|k| end_of_day - 5 * MIN + k * MIN).collect();
    times.extend((0..6).map(|k| DAY0 + 24 * HOUR + 30 * MIN + k * MIN));
    let (verdicts, clock) = run(&times);
    assert!(verdicts.iter().all(|v| *v == Verdict::Accept));
    assert_eq!(clock.base(), Some(DAY0 + 24 * HOUR + 35 * MIN));
    assert_eq!(clock.pane(), ((DAY0 + 24 * HOUR + 33 * MIN) / MIN) as u64);
}

#[test]
fn with_no_lateness_the_last_millisecond_of_a_day_is_late_after_midnight() {
    let midnight = DAY0 + 24 * HOUR;
    let mut clock: PartitionClock<u8> = PartitionClock::new(
        ClockRule {
            lateness_ms: 0,
            ..rule()
        },
        WindowSpec::hourly(),
    );
    let mut out = Vec::new();
    for t in [midnight - 3, midnight - 2, midnight - 1, midnight] {
        clock.offer(t, 0, &mut out);
    }
    clock.offer(midnight - 1, 1, &mut out);
    clock.offer(-5, 2, &mut out);
    assert_eq!(out[4].2, Verdict::Late { behind_ms: 1 });
    assert!(
        matches!(out[5].2, Verdict::Late { .. }),
        "before the epoch is never countable"
    );
    assert_eq!(clock.pane(), (midnight / MIN) as u64);
}

#[test]
fn a_sparse_partition_loses_nothing_and_lags_by_quorum_records() {
    // One record every 15 minutes: each is further ahead than max_jump.
    let times: Vec<Millis> = (0..30).map(|k| DAY0 + k * 15 * MIN).collect();
    let mut clock: PartitionClock<usize> = PartitionClock::new(rule(), WindowSpec::hourly());
    let mut out = Vec::new();
    for (i, t) in times.iter().enumerate() {
        clock.offer(*t, i, &mut out);
    }
    assert!(out.iter().all(|d| d.2 == Verdict::Accept));
    assert_eq!(clock.base(), Some(times[times.len() - rule().quorum]));
    clock.finish(&mut out);
    assert_eq!(out.len(), 30);
    assert!(
        out.iter().all(|d| d.2 == Verdict::Accept),
        "the tail is accepted at the end"
    );
}
