//! Catalog changes at run time: a compacted Kafka topic, and reloading the
//! catalog file. One worker (worker 0) reads them and enters the changes
//! into the catalog collection; every dependent measure follows.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::config::JobConfig;
use crate::core::catalog::{check_title, Catalog, Title};
use crate::core::error::{Error, Result};
use crate::core::event::ContentId;
use crate::core::time::Millis;

/// One accepted change: the title before and after (`None`: absent), and
/// the event time from which it holds, if the update named one.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The title as it was.
    pub before: Option<Title>,
    /// The title as it is now.
    pub after: Option<Title>,
    /// When the change takes effect (event time), if given.
    pub effective_at: Option<Millis>,
}

/// A refused update: where it came from and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    /// `catalog:<topic>` or `catalog-file:<path>`.
    pub source: String,
    /// Partition and offset (Kafka) or 0.
    pub partition: u32,
    /// Offset within the partition.
    pub position: u64,
    /// Why.
    pub reason: String,
    /// The record.
    pub raw: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    title: Title,
    effective_at: Option<Millis>,
}

/// Parses one catalog update value: a title, or `{"title": .., "effective_at": ..}`.
pub fn parse_update(bytes: &[u8]) -> std::result::Result<(Title, Option<Millis>), String> {
    if let Ok(e) = serde_json::from_slice::<Envelope>(bytes) {
        return Ok((e.title, e.effective_at));
    }
    serde_json::from_slice::<Title>(bytes)
        .map(|t| (t, None))
        .map_err(|e| format!("not a catalog title: {e}"))
}

/// The catalog as worker 0 knows it, and where its changes come from.
pub struct CatalogFeed {
    current: HashMap<ContentId, Title>,
    file: Option<(PathBuf, Option<SystemTime>)>,
    last_check: Instant,
    kafka: Option<(BaseConsumer, String)>,
    /// Records read at start (the topic up to where it fell silent).
    backlog: Vec<KafkaRecord>,
}

type KafkaRecord = (u32, u64, Option<Vec<u8>>, Option<Vec<u8>>);

fn read_some(consumer: &BaseConsumer, wait: Duration, out: &mut Vec<KafkaRecord>) -> bool {
    match consumer.poll(wait) {
        None => false,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "catalog topic");
            false
        }
        Some(Ok(m)) => {
            out.push((
                m.partition() as u32,
                m.offset().max(0) as u64,
                m.key().map(|k| k.to_vec()),
                m.payload().map(|p| p.to_vec()),
            ));
            true
        }
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl CatalogFeed {
    /// Starts from `initial`; watches the file and/or the topic the job
    /// names. `None` when it names neither: nothing can change the catalog.
    pub fn open(initial: &Catalog, job: &JobConfig) -> Result<Option<CatalogFeed>> {
        let file = match (&job.catalog.path, job.catalog.reload) {
            (Some(p), true) => Some((p.clone(), modified(p))),
            _ => None,
        };
        if file.is_none() && job.catalog.topic.is_none() {
            // Nothing can change the catalog.
            return Ok(None);
        }
        let kafka = match &job.catalog.topic {
            Some(topic) => {
                let consumer: BaseConsumer = super::kafka::client_config(&job.source.kafka)
                    .set("group.id", format!("{}-catalog", job.job.name))
                    .set("enable.auto.commit", "false")
                    .set("enable.partition.eof", "false")
                    .create()
                    .map_err(|e| Error::Config(format!("catalog consumer: {e}")))?;
                let meta = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .map_err(|e| Error::External {
                        system: "kafka",
                        message: format!("catalog topic {topic}: {e}"),
                        retryable: true,
                    })?;
                let mut tpl = TopicPartitionList::new();
                for t in meta.topics() {
                    for p in t.partitions() {
                        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                            .map_err(|e| Error::Internal(format!("catalog partitions: {e}")))?;
                    }
                }
                consumer
                    .assign(&tpl)
                    .map_err(|e| Error::Config(format!("catalog topic {topic}: {e}")))?;
                Some((consumer, topic.clone()))
            }
            None => None,
        };
        // Read what the topic holds before any event is processed, so that
        // changes with an `effective_at` take effect exactly then.
        let mut backlog = Vec::new();
        if let Some((consumer, _)) = &kafka {
            let began = Instant::now();
            let mut last = Instant::now();
            while last.elapsed() < Duration::from_secs(1)
                && began.elapsed() < Duration::from_secs(30)
            {
                if read_some(consumer, Duration::from_millis(100), &mut backlog) {
                    last = Instant::now();
                }
            }
            tracing::info!(records = backlog.len(), "catalog topic read");
        }
        Ok(Some(CatalogFeed {
            current: initial.titles.iter().map(|t| (t.id, t.clone())).collect(),
            file,
            last_check: Instant::now(),
            kafka,
            backlog,
        }))
    }

    /// Applies one upsert or removal, checked against the current catalog.
    fn apply(
        &mut self,
        id: ContentId,
        title: Option<Title>,
        effective_at: Option<Millis>,
    ) -> std::result::Result<Option<Change>, String> {
        if let Some(t) = &title {
            if t.id != id {
                return Err(format!("key {id} names a different title ({})", t.id));
            }
            check_title(t, |p| self.current.get(&p).map(|pt| pt.kind))?;
        }
        let before = self.current.get(&id).cloned();
        if before == title {
            return Ok(None);
        }
        match &title {
            Some(t) => self.current.insert(id, t.clone()),
            None => self.current.remove(&id),
        };
        Ok(Some(Change {
            before,
            after: title,
            effective_at,
        }))
    }

    /// Collects the changes that arrived since the last call.
    pub fn poll(&mut self) -> (Vec<Change>, Vec<Refused>) {
        let mut changes = Vec::new();
        let mut refused = Vec::new();
        if let Some((consumer, topic)) = self.kafka.as_ref() {
            let topic = topic.clone();
            let mut got = std::mem::take(&mut self.backlog);
            for _ in 0..10_000 {
                if !read_some(consumer, Duration::ZERO, &mut got) {
                    break;
                }
            }
            for (partition, position, key, value) in got {
                let raw = value
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let result = key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.trim().parse::<ContentId>().ok())
                    .ok_or_else(|| "the key is not a title id".to_string())
                    .and_then(|id| match value {
                        None => self.apply(id, None, None),
                        Some(v) => {
                            let (t, at) = parse_update(&v)?;
                            self.apply(id, Some(t), at)
                        }
                    });
                match result {
                    Ok(Some(c)) => changes.push(c),
                    Ok(None) => {}
                    Err(reason) => refused.push(Refused {
                        source: format!("catalog:{topic}"),
                        partition,
                        position,
                        reason,
                        raw,
                    }),
                }
            }
        }
        if self.last_check.elapsed() >= Duration::from_millis(500) {
            self.last_check = Instant::now();
            if let Some((path, seen)) = self.file.clone() {
                let now = modified(&path);
                if now != seen {
                    self.file = Some((path.clone(), now));
                    match Catalog::load(&path) {
                        Ok(cat) => {
                            let mut ids: Vec<ContentId> = self.current.keys().copied().collect();
                            ids.extend(cat.titles.iter().map(|t| t.id));
                            ids.sort_unstable();
                            ids.dedup();
                            // Parents first, so that every check sees its parent.
                            ids.sort_by_key(|id| cat.get(*id).map_or(9, |t| t.kind as u8));
                            for id in ids {
                                let after = cat.get(id).cloned();
                                let before = self.current.get(&id).cloned();
                                if before == after {
                                    continue;
                                }
                                // The whole file was checked; apply without re-checking order.
                                match &after {
                                    Some(t) => self.current.insert(id, t.clone()),
                                    None => self.current.remove(&id),
                                };
                                changes.push(Change {
                                    before,
                                    after,
                                    effective_at: None,
                                });
                            }
                            tracing::info!(path = %path.display(), changes = changes.len(), "catalog reloaded");
                        }
                        Err(e) => refused.push(Refused {
                            source: format!("catalog-file:{}", path.display()),
                            partition: 0,
                            position: 0,
                            reason: e.to_string(),
                            raw: String::new(),
                        }),
                    }
                }
            }
        }
        (changes, refused)
    }
}
