//! One assigned partition's reading state, and when it counts as quiet
//! (idle, or with `until = "idle"` finished).

use std::time::{Duration, Instant};

use crate::source::PartitionId;

/// One partition a worker reads.
pub(super) struct Assigned {
    pub(super) id: PartitionId,
    pub(super) next_offset: i64,
    pub(super) end: Option<i64>,
    pub(super) last_data: Instant,
    /// When the broker last told us the partition's end offset.
    pub(super) end_seen: Instant,
    /// When asking the broker for it last failed.
    pub(super) unreachable: Option<Instant>,
    pub(super) finished: bool,
}

/// How recent the broker's word on a partition's end offset must be for
/// the partition to count as caught up. While the broker cannot be asked
/// (it restarts, it is cut off) the end it reported last is stale: records
/// may have landed since, and a partition that looks caught up by it would
/// be taken for idle (its records then late) or, with `until = "idle"`,
/// finished (its records never read).
const END_FRESH: Duration = Duration::from_secs(5);

impl Assigned {
    /// Silent for `idle_timeout` while the broker could be reached, and
    /// caught up with an end offset the broker confirmed within
    /// [`END_FRESH`]. Silence while the broker was away is not quiet: the
    /// partition had no chance to deliver.
    pub(super) fn quiet(&self, idle_timeout: Duration, high: i64) -> bool {
        let silent = match self.unreachable {
            Some(at) => self.last_data.elapsed().min(at.elapsed()),
            None => self.last_data.elapsed(),
        };
        silent >= idle_timeout && self.end_seen.elapsed() < END_FRESH && self.next_offset >= high
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(silent: Duration, end_seen: Duration, unreachable: Option<Duration>) -> Assigned {
        let ago = |d: Duration| Instant::now().checked_sub(d).expect("a time in the past");
        Assigned {
            id: 0,
            next_offset: 100,
            end: None,
            last_data: ago(silent),
            end_seen: ago(end_seen),
            unreachable: unreachable.map(ago),
            finished: false,
        }
    }

    #[test]
    fn quiet_needs_silence_while_reachable_and_a_fresh_end() {
        let s = Duration::from_secs;
        let idle = s(8);
        assert!(part(s(10), s(1), None).quiet(idle, 100));
        // Behind the end, or not silent long enough: not quiet.
        assert!(!part(s(10), s(1), None).quiet(idle, 101));
        assert!(!part(s(7), s(1), None).quiet(idle, 100));
        // The end offset was last confirmed too long ago (the broker is away).
        assert!(!part(s(30), s(6), None).quiet(idle, 100));
        // Silent for 30 s, but the broker was away until 3 s ago.
        assert!(!part(s(30), s(1), Some(s(3))).quiet(idle, 100));
        assert!(part(s(30), s(1), Some(s(9))).quiet(idle, 100));
    }
}
