//! The title stage's provisional window counts: what it holds but has not
//! applied, because the frontier has not passed its time.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::exits::Exit;
use super::{Pending, Side};
use crate::core::time::Pane;
use crate::dataflow::live::Early;

/// The provisional window counts ([`Early`]) as of the newest pane with
/// facts here or `taken` by the process (the final counts are as of
/// `as_of`): the facts, restored windows and exits still pending up to it.
/// A fact enters at its pane and leaves one window (`width` panes) later.
pub(super) fn early(
    pending: &BTreeMap<Pane, Pending>,
    leaving: &BTreeMap<Pane, Vec<Exit>>,
    ids: &[crate::core::event::ContentId],
    (width, as_of, taken): (Pane, Pane, Pane),
) -> Arc<Early> {
    let newest = pending.iter().rev().find(|(_, (f, _))| !f.is_empty());
    let upto = newest.map_or(as_of, |(t, _)| *t).max(as_of).max(taken);
    let pending = pending.range(..=upto).flat_map(|(&t, (facts, sides))| {
        let entering = facts
            .iter()
            .flat_map(move |&(id, _, o)| [(id, t, o.views), (id, t + width, -o.views)]);
        let carried = sides.iter().filter_map(move |(side, r)| match side {
            Side::Windowed(id, m) => Some((*id, t, m.views * r)),
            _ => None,
        });
        entering.chain(carried)
    });
    let leaving = leaving.range(..=upto).flat_map(|(&t, exits)| {
        exits
            .iter()
            .map(move |e| (ids[e.slot as usize], t, i64::from(e.views)))
    });
    Arc::new(Early::sum(upto, pending.chain(leaving)))
}
