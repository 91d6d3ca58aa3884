//! Confirms a loss at the end of a partition's log by fetching the record
//! before the offset the job wants, with a second consumer: some brokers
//! report an end offset short of what their log holds, and a restarted one
//! may hand out nothing at all for a while.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{kafka_err, JobConsumer};
use crate::core::error::{Error, Result};

/// What the broker said about an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// It handed out the record (or a later one).
    Yes,
    /// It said the offset is outside the log.
    Gone,
    /// Neither within the probe's time: ask again later.
    Unknown,
}

/// Whether `topic`'s partition `p` still holds `offset` (asks for up to 5 s).
pub(super) fn holds(probe: &JobConsumer, topic: &str, p: i32, offset: i64) -> Result<Held> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(offset))
        .map_err(|e| Error::Internal(format!("probing partition {p}: {e}")))?;
    probe
        .assign(&tpl)
        .map_err(|e| kafka_err(format!("probing partition {p}: {e}"), true))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held = Held::Unknown;
    while Instant::now() < deadline {
        match probe.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.partition() == p => {
                held = if m.offset() >= offset {
                    Held::Yes
                } else {
                    Held::Gone
                };
                break;
            }
            Some(Err(e))
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
                ) =>
            {
                held = Held::Gone;
                break;
            }
            _ => {}
        }
    }
    let _ = probe.unassign();
    Ok(held)
}
