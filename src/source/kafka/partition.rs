//! One assigned partition's reading state, when it counts as quiet (idle,
//! or with `until = "idle"` finished), and where it goes on when the offset
//! it wants is not in its log.

use std::time::{Duration, Instant};

use super::{kafka_err, OnLostOffsets};
use crate::core::error::Error;
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

/// How long a partition read to the broker's current end, but short of an
/// end it reported before, waits for the rest before the job stops.
pub(super) fn stale_end_limit(idle_timeout: Duration) -> Duration {
    (idle_timeout * 6).max(Duration::from_secs(30))
}

/// The broker hands out less than it reported holding: an external error
/// (a restart resumes from the last checkpoint, with new connections).
pub(super) fn short_of_end(topic: &str, part: &Assigned, high: i64) -> Error {
    let (p, next, now) = (part.id, part.next_offset, part.reported_end);
    kafka_err(
        format!("topic `{topic}` partition {p}: read to offset {next}, the end the broker reports now ({now}), but it reported the log reaching {high} before and has handed out nothing more for {:?}; stopping rather than finishing short (a restart resumes from the last checkpoint)", part.last_data.elapsed()),
        true,
    )
}

/// Where a partition goes on when the offset it wants is outside its log
/// `[low, high]`, and how many offsets that skips; `None` if it is inside.
///
/// Offsets that vanished from the end of the log (a recreated topic) count
/// as lost with either policy; `latest` also skips what the log holds.
///
/// ```
/// use popularity::source::kafka::{relocate, OnLostOffsets::*};
/// assert_eq!(relocate(50, 0, 100, Earliest), None);
/// assert_eq!(relocate(10, 40, 100, Earliest), Some((40, 30)));
/// assert_eq!(relocate(10, 40, 100, Latest), Some((100, 90)));
/// assert_eq!(relocate(5000, 0, 1200, Earliest), Some((0, 3800)));
/// assert_eq!(relocate(5000, 0, 1200, Latest), Some((1200, 5000)));
/// ```
pub fn relocate(wanted: i64, low: i64, high: i64, policy: OnLostOffsets) -> Option<(i64, u64)> {
    if (low..=high).contains(&wanted) {
        return None;
    }
    let vanished = (wanted - high).max(0);
    let next = match policy {
        OnLostOffsets::Latest => high,
        OnLostOffsets::Earliest | OnLostOffsets::Fail => low,
    };
    let skipped = if wanted < low {
        next - wanted
    } else {
        vanished + (next - low)
    };
    Some((next, skipped as u64))
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
