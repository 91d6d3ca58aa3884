//! Exponential back-off between attempts, shared by every retry loop (the
//! broker at start, the store at start, uploads, checkpoint parts), so they
//! all wait the same way: double each time, never past a cap.
//!
//! ```
//! use std::time::Duration;
//! use popularity::core::backoff::Backoff;
//!
//! let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
//! assert_eq!(b.peek(), Duration::from_millis(200));
//! let waits: Vec<u128> = (0..5).map(|_| b.next_wait().as_millis()).collect();
//! assert_eq!(waits, [200, 400, 800, 1000, 1000]);
//! ```

use std::time::Duration;

/// The wait before the next attempt, doubling up to a cap.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    wait: Duration,
    cap: Duration,
}

impl Backoff {
    /// Starts at `first`; doubling never goes past `cap` (a first wait
    /// above it is kept once, as configured).
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff { wait: first, cap }
    }

    /// The wait the next call of [`Backoff::next_wait`] returns.
    pub fn peek(&self) -> Duration {
        self.wait
    }

    /// The wait before the next attempt; the one after is twice as long, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let now = self.wait;
        self.wait = (self.wait * 2).min(self.cap);
        now
    }
}
