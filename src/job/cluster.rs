//! Running a job's workers, in one process or as one process of a cluster:
//! the cluster's connect bound, a peer that goes away, and the checkpoint
//! writer that outlives the workers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::run_worker;
use super::Context;
use crate::checkpoint::Writer;
use crate::core::error::{Error, Result};
use crate::core::stats::StatsSnapshot;

/// Runs the job on the workers described by `config` and returns this process's counters.
pub fn execute(config: timely::Config, ctx: Arc<Context>) -> Result<StatsSnapshot> {
    let shared = ctx.clone();
    // Processes of a cluster block until every peer has connected. A peer
    // that never comes up (it failed to start, its port was taken) would
    // leave this one waiting forever: give up after `job.connect-timeout`.
    let formed = Arc::new(AtomicBool::new(false));
    let cluster = matches!(
        config.communication,
        timely::CommunicationConfig::Cluster { .. }
    );
    if cluster {
        let formed = formed.clone();
        let limit = ctx.job.job.connect_timeout;
        std::thread::spawn(move || {
            let began = Instant::now();
            while began.elapsed() < limit {
                if formed.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !formed.load(Ordering::Acquire) {
                eprintln!(
                    "error: the cluster did not form within {limit:?} (job.connect-timeout): \
                     a peer process is down or unreachable"
                );
                std::process::exit(3);
            }
        });
    }
    let writer = match (ctx.checkpointing(), &ctx.store) {
        (true, Some(store)) => Some(Writer::spawn(
            store.clone(),
            &ctx.job.job.name,
            ctx.job.checkpoint.keep,
            ctx.stats.clone(),
        )?),
        _ => None,
    };
    let workers_writer = writer.clone();
    let began = Instant::now();
    if cluster {
        stop_when_a_peer_goes(ctx.clone(), writer.clone(), began);
    }
    let local = match &config.communication {
        timely::CommunicationConfig::Cluster { threads, .. } => *threads,
        _ => 1,
    };
    let left = Arc::new(AtomicUsize::new(0));
    // Connecting blocks until every peer is there (bounded by the thread above).
    let heartbeat_timeout = ctx.job.job.heartbeat_timeout()?;
    let (builders, network) = super::network::connect(config.communication, heartbeat_timeout)?;
    let guards = timely::execute::execute_from(builders, network, config.worker, move |worker| {
        formed.store(true, Ordering::Release);
        let result = run_worker(worker, &shared, workers_writer.clone());
        if result.is_ok() && cluster && shared.stop.load(Ordering::Relaxed) {
            leave_cluster(&shared, &left, local, began);
        }
        if let Err(e) = &result {
            // Let the other workers of this process stop too.
            shared.fault.set(e);
            if cluster {
                // Leaving the closure would let timely tell the peers this
                // process shut down cleanly, and they would wait for it
                // forever; ending here breaks the connections, so they stop too.
                eprintln!("error: {e}");
                std::process::exit(e.exit_code());
            }
        }
        result
    })
    .map_err(|e| Error::Config(format!("starting workers: {e}")))?;
    let mut outcome = Ok(());
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            // The first fault: every failed worker reports the same one.
            Ok(Err(e)) => outcome = outcome.and(Err(e)),
            Err(e) => outcome = outcome.and(Err(Error::Internal(format!("worker panicked: {e}")))),
        }
    }
    if let Some(writer) = writer {
        // The last manifest of a finished source, within the stop bound.
        writer.finish(ctx.job.checkpoint.stop_limit());
    }
    outcome.map(|()| ctx.stats.snapshot())
}

/// Ends a process of a cluster that stopped on request, once each of its
/// `local` workers has its final checkpoint complete. Leaving the workers'
/// closure would let timely tell the peers this process shut down cleanly,
/// and peers that were not asked to stop would wait for it forever (a
/// rolling upgrade, which stops one process at a time, would hang). Ending
/// the process breaks the connections instead: the peers stop too, and
/// their restart policy brings them back to re-form with this process's
/// replacement from the checkpoint just written.
fn leave_cluster(ctx: &Context, left: &AtomicUsize, local: usize, began: Instant) -> ! {
    if left.fetch_add(1, Ordering::AcqRel) + 1 >= local {
        exit_stopped(ctx, began);
    }
    loop {
        std::thread::park();
    }
}

/// Ends a process that stopped with its final checkpoint complete: the
/// summary line a run prints at its end, then status 0.
fn exit_stopped(ctx: &Context, began: Instant) -> ! {
    let secs = began.elapsed().as_secs_f64();
    println!("{}", ctx.stats.snapshot().summary(secs));
    std::process::exit(0);
}

/// A peer process that goes away shows up only as a panic of timely's
/// network threads, which the workers never see: they would wait for the
/// peer forever. The panic becomes this process's fault, so it stops too
/// (and, restarted, resumes from the last checkpoint with its peers).
fn stop_when_a_peer_goes(ctx: Arc<Context>, writer: Option<Arc<Writer>>, began: Instant) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let network = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("timely:send") || n.starts_with("timely:recv"));
        if !network {
            return;
        }
        let what = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("no reason given");
        ctx.fault.set(&Error::External {
            system: crate::core::error::CLUSTER,
            message: format!(
                "the connection to a peer process broke ({what}); stopping this process too"
            ),
            retryable: true,
        });
        // Stopping too, the peer may have gone once the final checkpoint was
        // complete (the process that writes its manifest sees that first).
        // Waiting here, before timely's threads fail behind this one, lets
        // this process see it and end as a stop does.
        if let (true, Some(w)) = (ctx.stop.load(Ordering::Relaxed), &writer) {
            if w.awaited_completes_within(Duration::from_secs(5)) {
                exit_stopped(&ctx, began);
            }
        }
    }));
}
