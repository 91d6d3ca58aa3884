//! The sliding window as a collection.
//!
//! A pane's views enter at the pane (`+n`) and leave one window later
//! (`−n` at `pane + W`), so the accumulated multiplicity of a title at pane
//! `p` is exactly its views in panes `p − W + 1 ..= p`: the sliding window
//! ending at `p`. Each update is touched twice, whatever the window/slide
//! ratio; nothing is copied into `W` overlapping windows.

use differential_dataflow::VecCollection;

use crate::core::time::{Pane, WindowSpec};

/// Views of the sliding window described by `window`, from per-pane views.
///
/// The result's multiplicity at time `p` is the sum of the input's
/// multiplicities over the `window.panes()` panes ending at `p`.
///
/// # Examples
///
/// Two views of title 7 in pane 5 of a 1-hour window sliding 1 minute: they
/// enter at pane 5 and leave 60 panes later.
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use differential_dataflow::input::Input;
/// use popularity::core::time::WindowSpec;
/// use popularity::dataflow::windowed_views;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, views) = scope.new_collection::<u64, i64>();
///         windowed_views(views, &WindowSpec::hourly())
///             .inspect(move |update| sink.lock().expect("not poisoned").push(*update));
///         input
///     });
///     input.advance_to(5);
///     input.update(7, 2);
/// });
/// let mut seen = seen.lock().expect("not poisoned").clone();
/// seen.sort();
/// assert_eq!(seen, [(7, 5, 2), (7, 65, -2)]);
/// ```
pub fn windowed_views<'scope, D>(
    panes: VecCollection<'scope, Pane, D, i64>,
    window: &WindowSpec,
) -> VecCollection<'scope, Pane, D, i64>
where
    D: differential_dataflow::Data,
{
    let width = window.panes();
    let expired = panes.clone().delay(move |t| t + width).negate();
    panes.concat(expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use differential_dataflow::input::Input;
    use timely::dataflow::operators::probe::Handle;

    /// The window over a seeded random ±n stream equals a recount at every pane.
    #[test]
    fn window_matches_recount_at_every_pane() {
        let spec = WindowSpec::new(5 * 60_000, 60_000).expect("valid");
        let seen: Arc<Mutex<Vec<(u64, Pane, i64)>>> = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut rng = crate::core::rng::SplitMix64::new(11);
        let updates: Vec<(u64, Pane, i64)> = (0..2000)
            .map(|_| (rng.below(20), rng.below(40), 1 + rng.below(3) as i64))
            .collect();
        let input_updates = updates.clone();
        timely::execute(timely::Config::thread(), move |worker| {
            let sink = sink.clone();
            let (mut input, probe): (_, Handle<Pane>) = worker.dataflow::<Pane, _, _>(|scope| {
                let (input, panes) = scope.new_collection::<u64, i64>();
                let (probe, _) = windowed_views(panes, &spec)
                    .inspect(move |(d, t, r)| sink.lock().expect("not poisoned").push((*d, *t, *r)))
                    .probe();
                (input, probe)
            });
            let mut sorted = input_updates.clone();
            sorted.sort_by_key(|u| u.1);
            for (d, t, r) in sorted {
                if *input.time() < t {
                    input.advance_to(t);
                }
                input.update_at(d, t, r);
            }
            input.advance_to(100);
            input.flush();
            worker.step_while(|| probe.less_than(&100));
        })
        .expect("timely runs");
        let seen = seen.lock().expect("not poisoned");
        for p in 0..60 {
            for d in 0..20 {
                let got: i64 = seen
                    .iter()
                    .filter(|u| u.0 == d && u.1 <= p)
                    .map(|u| u.2)
                    .sum();
                let want: i64 = updates
                    .iter()
                    .filter(|u| u.0 == d && u.1 <= p && u.1 + 5 > p)
                    .map(|u| u.2)
                    .sum();
                assert_eq!(got, want, "content {d} at pane {p}");
            }
        }
    }
}
