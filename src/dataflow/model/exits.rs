//! What the title stage holds to leave its windows, kept small: a window
//! exit in 16 bytes, a score-window exit in 8, numbers past 32 bits split
//! into parts that sum to them exactly.

use crate::core::model::Cell;

/// One title's views and watch time in one cell, to leave the window at a
/// pane: 16 bytes where the fact it came from took 24. A fact whose numbers
/// do not fit in 32 bits leaves as several ([`split32`]), so nothing is cut.
#[derive(Clone, Copy, Debug)]
pub(super) struct Exit {
    pub(super) slot: u32,
    pub(super) views: i32,
    pub(super) watch_ms: i32,
    pub(super) cell: Cell,
}

/// Splits `(a, b)` into parts that each fit in 32 bits and together sum to
/// it exactly: one part for any number a title sees in a pane, more only
/// past two billion.
pub(super) fn split32(mut a: i64, mut b: i64, mut give: impl FnMut(i32, i32)) {
    loop {
        let x = a.clamp(i32::MIN.into(), i32::MAX.into()) as i32;
        let y = b.clamp(i32::MIN.into(), i32::MAX.into()) as i32;
        give(x, y);
        a -= i64::from(x);
        b -= i64::from(y);
        if a == 0 && b == 0 {
            return;
        }
    }
}

/// Adds `views` to a title's entry among a score step's exits (`list`;
/// `mark` is the entry's place plus one, 0 for none), or a new entry where
/// there is none or the sum would pass 32 bits. Returns the entries added.
pub(super) fn fold_exit(
    list: &mut Vec<(u32, i32)>,
    mark: &mut u32,
    slot: u32,
    mut views: i64,
) -> usize {
    let at = mark.checked_sub(1).and_then(|at| list.get_mut(at as usize));
    if let Some(e) = at.filter(|e| e.0 == slot) {
        let sum = i64::from(e.1) + views;
        let kept = sum.clamp(i32::MIN.into(), i32::MAX.into());
        e.1 = kept as i32;
        views = sum - kept;
        if views == 0 {
            return 0;
        }
    }
    let before = list.len();
    split32(views, 0, |v, _| list.push((slot, v)));
    *mark = list.len() as u32;
    list.len() - before
}
