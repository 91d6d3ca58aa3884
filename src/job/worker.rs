//! One worker: restore, build the dataflow, open the source, re-insert
//! the checkpoint's windows, drive.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use differential_dataflow::input::InputSession;
use timely::worker::Worker;

use super::driver::Driver;
use super::model_feed::ModelFeed;
use super::restore::{feed, restore_state, restored_clock, Restore};
use super::{graph, Context, DeadLetterTarget};
use crate::checkpoint::{fact_of, Checkpointer, Writer};
use crate::core::error::Result;
use crate::core::event::ContentId;
use crate::core::model::{Cell, Obs};
use crate::core::time::{millis, Pane};
use crate::sink::deadletter::{DeadLetterSink, LocalDeadLetters, MemoryDeadLetters};
use crate::source::kafka::KafkaDeadLetters;

/// One worker: restore, build the dataflow, open the source, drive it;
/// `writer` writes its checkpoint parts, when the job checkpoints.
pub fn run_worker(worker: &mut Worker, ctx: &Context, writer: Option<Arc<Writer>>) -> Result<()> {
    let (index, peers) = (worker.index(), worker.peers());
    let _span = tracing::info_span!("worker", index, peers).entered();
    let began = Instant::now();
    let restore = restore_state(ctx, index, peers)?;
    let dataflow = worker.next_dataflow_index();
    let (inputs, probe) =
        worker.dataflow::<Pane, _, _>(|scope| graph::build(scope, ctx, restore.time));
    let (source, source_name) = ctx.open_source(index, peers, &restore.offsets())?;
    let mut model = match inputs.model {
        Some(m) => Some(ModelFeed::start(ctx, m, restore.time, (index, peers))?),
        None => None,
    };
    let mut views = inputs.views;
    let carry = reinsert(ctx, &restore, &mut views, inputs.restored, model.as_mut());
    if carry.is_some() {
        tracing::info!(took = ?began.elapsed(), "checkpoint loaded and re-inserted");
    }
    let mut driver = Driver::new(ctx, source, source_name, open_dead_letters(ctx, index)?);
    driver.model = model;
    driver.carry = carry;
    ctx.ready.store(true, Ordering::Relaxed);
    for (p, l) in &restore.ledgers {
        driver.marks.insert(*p, restored_clock(ctx, l)?);
    }
    if let Some(writer) = writer {
        driver.checkpointer = Some(checkpointer(ctx, writer, (index, peers), restore)?);
    }
    let outcome = driver.drive(worker, views, &probe);
    // Only a source that ended lets the dataflow run out. A stop is not the
    // end of the stream (the closed input would run the frontier out and
    // publish unfinished hours), and after a fault the dataflow may never
    // complete (a failed hour holds its capability): drop it in both cases.
    if !matches!(outcome, Ok(false)) {
        worker.drop_dataflow(dataflow);
    }
    outcome.map(|_| ())
}

/// The worker's dead-letter sink.
fn open_dead_letters(ctx: &Context, index: usize) -> Result<Box<dyn DeadLetterSink>> {
    Ok(match &ctx.dead_letters {
        DeadLetterTarget::Local(dir) => Box::new(LocalDeadLetters::open(dir, index)?),
        DeadLetterTarget::CountOnly => Box::new(MemoryDeadLetters {
            count_only: true,
            ..Default::default()
        }),
        DeadLetterTarget::Kafka => Box::new(KafkaDeadLetters::open(
            &ctx.job.source.kafka,
            &ctx.job.dead_letter.path,
            index,
        )?),
    })
}

/// The worker's checkpointer, holding the restored ledgers.
fn checkpointer(
    ctx: &Context,
    writer: Arc<Writer>,
    (index, peers): (usize, usize),
    restore: Restore,
) -> Result<Checkpointer> {
    let interval = millis(ctx.job.checkpoint.interval);
    // The ledger keeps what the longest window still needs.
    let panes = ctx.window.panes();
    let kept = ctx.model.map_or(panes, |m| m.score_panes.max(panes));
    let mut cp = Checkpointer::new(writer, index, peers, interval.max(1) as u64, kept);
    cp.ledgers = restore.ledgers;
    if let (Some(id), Some(time)) = (restore.id, restore.time) {
        cp.restored(id, time);
    }
    Ok(cp)
}

/// After a restore: advances the inputs to the checkpoint time and enters
/// the checkpoint's pane counts (views, or the model's facts); returns the
/// carry input and that time. Without a restore, drops the carry inputs.
fn reinsert(
    ctx: &Context,
    restore: &Restore,
    input: &mut InputSession<Pane, ContentId, i64>,
    mut restored: InputSession<Pane, ContentId, i64>,
    mut model: Option<&mut ModelFeed>,
) -> Option<(InputSession<Pane, ContentId, i64>, Pane)> {
    let Some(time) = restore.time else {
        if let Some(m) = model {
            m.carry = None;
        }
        return None;
    };
    input.advance_to(time);
    restored.advance_to(time);
    if let Some(m) = model.as_mut() {
        m.facts.advance_to(time);
        if let Some(c) = m.carry.as_mut() {
            c.advance_to(time);
        }
    }
    let width = ctx.window.panes();
    // With the model its input carries the views (a checkpoint taken with
    // the model has no others).
    let plain = model.is_none();
    let facts = split_ledgers(restore, |content, pane, n| {
        if plain {
            feed(input, &mut restored, time, width, content, pane, n);
        }
    });
    if let Some(m) = model {
        for ((id, pane, cell), obs) in facts {
            m.feed(width, time, (id, cell), pane, obs);
        }
        m.flush();
    }
    input.flush();
    restored.flush();
    Some((restored, time))
}

/// The restored ledgers' counts: the model's facts summed by title, pane
/// and cell; plain views handed to `views` one by one.
fn split_ledgers(
    restore: &Restore,
    mut views: impl FnMut(ContentId, Pane, i64),
) -> HashMap<(ContentId, Pane, Cell), Obs> {
    let mut facts: HashMap<(ContentId, Pane, Cell), Obs> = HashMap::new();
    for ledger in restore.ledgers.values() {
        for (&pane, counts) in &ledger.panes {
            for (&content, &n) in counts {
                match fact_of(content) {
                    Some((id, cell, true)) => {
                        facts.entry((id, pane, cell)).or_default().watch_ms += n
                    }
                    Some((id, cell, false)) => {
                        facts.entry((id, pane, cell)).or_default().views += n
                    }
                    None => views(content, pane, n),
                }
            }
        }
    }
    facts
}
