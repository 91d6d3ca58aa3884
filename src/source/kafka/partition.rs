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
    /// The end offset the broker reported last (the progress board keeps
    /// the highest it ever reported).
    pub(super) reported_end: i64,
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

    /// Read to the end the broker reports now, but short of one it reported
    /// before (`high`, the highest), and silent for `limit`: a log's end
    /// never moves back, so the broker is handing out less than it holds.
    /// Finishing here would lose the rest without a word.
    pub(super) fn short_of_an_earlier_end(&self, high: i64, limit: Duration) -> bool {
        self.next_offset < high
            && self.next_offset >= self.reported_end
            && self.last_data.elapsed() >= limit
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
            reported_end: 100,
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

    #[test]
    fn an_end_that_moved_back_is_not_quiet_and_is_found_out() {
        let s = Duration::from_secs;
        // The broker said 180 before and says 100 now: not done, and after
        // the limit, a broker handing out less than it holds.
        let p = part(s(60));
        assert!(!p.quiet(s(8), 180, None));
        assert!(p.short_of_an_earlier_end(180, s(48)));
        assert!(
            !part(s(30)).short_of_an_earlier_end(180, s(48)),
            "not for long"
        );
        assert!(!p.short_of_an_earlier_end(100, s(48)), "no earlier end");
        let behind = Assigned {
            reported_end: 150,
            ..part(s(60))
        };
        assert!(
            !behind.short_of_an_earlier_end(180, s(48)),
            "a backlog is slow, not short"
        );
    }
}
