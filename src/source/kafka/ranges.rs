//! Each partition's log range (`[low, high]`), asked of the broker on a
//! thread of its own every 2 s, and at once when the reader asks: a query
//! is a round trip that can queue behind a long-polling fetch, and a
//! reading loop that made it itself stood still for it (in about a quarter
//! of a source thread's samples while reading a backlog at full speed).
//!
//! The thread shares the reader's client and is joined when the reader
//! drops its end: the client is then destroyed on the reading thread, and
//! no query of it is still in flight when the source (or the process) ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use super::JobConsumer;
use crate::core::error::{Error, Result};

/// How often the ranges are asked for.
const EVERY: Duration = Duration::from_secs(2);

/// How long one answer may take. A query queues behind a fetch that
/// long-polls (`fetch.wait.max.ms`, 500 ms by default) when a partition is
/// caught up, and a request that times out in flight makes the client drop
/// the connection (`socket.max.fails` = 1): so more than a long poll, which
/// only this thread waits for.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What the reader tells the watcher.
enum Ask {
    /// Ask for every range now (an offset looked out of range).
    Now,
    /// Watch this partition too.
    Watch(i32),
}

/// A partition's log range as the broker answered, with the reader's next
/// offset when the question went out: `(low, high, then)`. Records read
/// while it was out came from the broker, so only `then` can be past the
/// end the answer reports.
pub(super) type Answer = (i64, i64, i64);

/// The reader's end of the watcher thread, which is stopped and joined when
/// this is dropped.
pub(super) struct Ranges {
    asks: Sender<Ask>,
    answers: Arc<Mutex<BTreeMap<i32, Answer>>>,
    positions: Arc<Mutex<BTreeMap<i32, i64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ranges {
    /// Starts watching the partitions of `topic` at their next offsets.
    pub(super) fn spawn(
        consumer: Arc<JobConsumer>,
        topic: String,
        parts: &[(i32, i64)],
        name: String,
    ) -> Result<Ranges> {
        let (asks, rx) = channel();
        let answers = Arc::new(Mutex::new(BTreeMap::new()));
        let positions = Arc::new(Mutex::new(parts.iter().copied().collect()));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = Watcher {
            stop: Arc::clone(&stop),
            consumer,
            topic,
            parts: parts.iter().map(|&(p, _)| p).collect(),
            answers: answers.clone(),
            positions: Arc::clone(&positions),
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || watcher.run(&rx))
            .map_err(|e| Error::io("starting the Kafka offsets thread", e))?;
        Ok(Ranges {
            asks,
            answers,
            positions,
            stop,
            thread: Some(thread),
        })
    }

    /// Watches partition `p` too, read from `next`.
    pub(super) fn watch(&self, p: i32, next: i64) {
        self.note(p, next);
        let _ = self.asks.send(Ask::Watch(p));
    }

    /// The reader's next offset of partition `p`.
    pub(super) fn note(&self, p: i32, next: i64) {
        if let Ok(mut at) = self.positions.lock() {
            at.insert(p, next);
        }
    }

    /// Asks for every range now rather than at the next round.
    pub(super) fn ask_now(&self) {
        let _ = self.asks.send(Ask::Now);
    }

    /// The ranges answered since the last call, newest per partition.
    pub(super) fn take(&self) -> BTreeMap<i32, Answer> {
        self.answers
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }
}

impl Drop for Ranges {
    /// Waits at most for the query in flight (`ANSWER_WITHIN`).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.asks.send(Ask::Now);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the Kafka offsets thread panicked (a bug)");
            }
        }
    }
}

/// The thread that asks.
struct Watcher {
    stop: Arc<AtomicBool>,
    consumer: Arc<JobConsumer>,
    topic: String,
    parts: Vec<i32>,
    answers: Arc<Mutex<BTreeMap<i32, Answer>>>,
    positions: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl Watcher {
    /// Asks for each partition's range, then waits for
    /// the next round or an ask; ends when the reader is gone.
    fn run(mut self, asks: &Receiver<Ask>) {
        loop {
            for &p in &self.parts {
                if self.stopped() {
                    return;
                }
                self.ask(p);
            }
            if self.stopped() {
                return;
            }
            let next = Instant::now() + EVERY;
            loop {
                match asks.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Ok(Ask::Watch(p)) => {
                        if !self.parts.contains(&p) {
                            self.parts.push(p);
                        }
                    }
                    Ok(Ask::Now) | Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// One partition's range. A failed query is asked again next round; the
    /// reader's own client reports an unreachable broker.
    fn ask(&self, p: i32) {
        let then = self
            .positions
            .lock()
            .ok()
            .and_then(|at| at.get(&p).copied())
            .unwrap_or(i64::MAX);
        let range = self
            .consumer
            .fetch_watermarks(&self.topic, p, ANSWER_WITHIN);
        if let (Ok((low, high)), Ok(mut a)) = (range, self.answers.lock()) {
            a.insert(p, (low, high, then));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaConfig;

    /// A client of a broker that never answers: every query takes its whole
    /// `ANSWER_WITHIN`.
    fn unanswered() -> Arc<JobConsumer> {
        let cfg = KafkaConfig {
            brokers: "127.0.0.1:9".into(),
            topic: "t".into(),
            ..KafkaConfig::default()
        };
        Arc::new(super::super::job_consumer(&cfg, "ranges-test").expect("a client"))
    }

    #[test]
    fn dropping_the_ranges_waits_for_the_query_in_flight_and_releases_the_client() {
        let consumer = unanswered();
        let ranges = Ranges::spawn(consumer.clone(), "t".into(), &[(0, 0)], "ranges".into())
            .expect("spawned");
        // Let the first query go out.
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        drop(ranges);
        assert!(
            started.elapsed() <= ANSWER_WITHIN + Duration::from_secs(2),
            "the drop waited past one query: {:?}",
            started.elapsed()
        );
        // The source that drops its ranges destroys the client itself (a
        // client left to a thread outlives the source, and outlived the job
        // when the topic was recreated, where librdkafka crashes).
        assert_eq!(Arc::strong_count(&consumer), 1, "the thread let go of it");
    }
}
