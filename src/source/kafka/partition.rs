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
    pub(super) finished: bool,
}

impl Assigned {
    /// Silent for `idle_timeout` while the broker could be reached, and
    /// caught up with the end offset the broker last reported. Silence
    /// while the broker was away is not quiet: the partition had no chance
    /// to deliver, and the end it reported before may be stale (records may
    /// have landed since); counted from its return, the silence gives the
    /// client time to fetch again.
    /// `unreachable`: when the client last reported the broker down.
    pub(super) fn quiet(
        &self,
        idle_timeout: Duration,
        high: i64,
        unreachable: Option<Instant>,
    ) -> bool {
        let silent = match unreachable {
            Some(at) => self.last_data.elapsed().min(at.elapsed()),
            None => self.last_data.elapsed(),
        };
        silent >= idle_timeout && self.next_offset >= high
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(d: Duration) -> Instant {
        Instant::now().checked_sub(d).expect("a time in the past")
    }

    fn part(silent: Duration) -> Assigned {
        Assigned {
            id: 0,
            next_offset: 100,
            end: None,
            last_data: ago(silent),
            finished: false,
        }
    }

    #[test]
    fn quiet_needs_silence_while_the_broker_was_reachable() {
        let s = Duration::from_secs;
        let idle = s(8);
        assert!(part(s(10)).quiet(idle, 100, None));
        // Behind the end, or not silent long enough: not quiet.
        assert!(!part(s(10)).quiet(idle, 101, None));
        assert!(!part(s(7)).quiet(idle, 100, None));
        // Silent for 30 s, but the broker was away until 3 s ago.
        assert!(!part(s(30)).quiet(idle, 100, Some(ago(s(3)))));
        assert!(part(s(30)).quiet(idle, 100, Some(ago(s(9)))));
    }
}
