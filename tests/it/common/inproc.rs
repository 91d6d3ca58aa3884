//! Jobs run inside the test process, alone or serving their endpoint.

use std::sync::Arc;

use popularity::config::JobConfig;
use popularity::core::stats::StatsSnapshot;
use popularity::job::{execute, Context};

use super::free_port;

/// Runs a job in this process with `workers` threads.
pub fn run_in_process(job: JobConfig, workers: usize) -> StatsSnapshot {
    let ctx = Arc::new(Context::from_job(job).expect("valid job"));
    execute(timely::Config::process(workers), ctx).expect("job runs")
}

/// A job's context with its endpoint listening on a free port, and the
/// endpoint's address.
pub fn serving(mut job: JobConfig) -> (Context, String) {
    job.metrics.listen = format!("127.0.0.1:{}", free_port());
    let ctx = Context::from_job(job).expect("valid job");
    let addr = ctx
        .serve_metrics(0, 1)
        .expect("binds")
        .expect("enabled")
        .to_string();
    (ctx, addr)
}

/// Runs a job on two worker threads in the background.
pub fn run_in_background(ctx: Context) -> (Arc<Context>, std::thread::JoinHandle<StatsSnapshot>) {
    let ctx = Arc::new(ctx);
    let runner = {
        let ctx = ctx.clone();
        std::thread::spawn(move || execute(timely::Config::process(2), ctx).expect("job runs"))
    };
    (ctx, runner)
}

/// Times `n` sequential calls of `call` and prints p50, p99 and the
/// maximum: a figure to report, not to assert (a benchmark, not a timed test).
pub fn report_latency(what: &str, n: usize, mut call: impl FnMut()) {
    let mut times: Vec<std::time::Duration> = (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            call();
            t.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "{what} latency over {n} sequential requests: p50 {:?}, p99 {:?}, max {:?}",
        times[n / 2],
        times[n * 99 / 100],
        times[n - 1]
    );
}
