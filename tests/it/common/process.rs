//! Jobs as processes: spawned with piped output, waited for with bounds,
//! their pipes always drained.

use std::path::{Path, PathBuf};

use super::free_ports;

/// Starts `popularity run --job <job> <args>` with its output piped; wait
/// for it with [`wait_bounded`], [`wait_group`] or [`wait_each`], which read
/// the pipes.
pub fn spawn_job(job: &Path, args: &[&str]) -> std::process::Child {
    spawn_job_with(job, args, &[])
}

/// [`spawn_job`] with `env` added to the job's environment (the test
/// process never sets its own: other tests' threads read it).
pub fn spawn_job_with(job: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_popularity"))
        .args(["run", "--job"])
        .arg(job)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn job")
}

/// How many records a job that must have succeeded read (its summary line).
pub fn records_read(out: &std::process::Output) -> u64 {
    assert!(
        out.status.success(),
        "job failed: {}",
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("read ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no summary in {text:?}"))
}

/// Runs a job to its end (at most five minutes); how many records it read.
pub fn run_to_end(job: &Path, args: &[&str]) -> u64 {
    records_read(&wait_bounded(
        spawn_job(job, args),
        std::time::Duration::from_secs(300),
        "job",
    ))
}

/// Waits for a child at most `limit`; past it, kills the child and panics
/// (a test that hangs would stall the whole run instead of failing).
pub fn wait_bounded(
    child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    wait_group(vec![child], limit, what).remove(0)
}

/// Waits for the processes of one cluster at most `limit`. When one fails,
/// its peers would wait for it forever: they are killed, and the test fails
/// with every process's stderr.
pub fn wait_group(
    children: Vec<std::process::Child>,
    limit: std::time::Duration,
    what: &str,
) -> Vec<std::process::Output> {
    let (outputs, trouble) = collect(children, limit, true);
    let outputs: Vec<_> = outputs.into_iter().map(|(o, _)| o).collect();
    if let Some(trouble) = trouble {
        let logs: Vec<String> = outputs
            .iter()
            .enumerate()
            .map(|(k, o)| {
                format!(
                    "--- process {k} ({}), stderr ends:\n{}",
                    o.status,
                    tail(&String::from_utf8_lossy(&o.stderr), 15)
                )
            })
            .collect();
        panic!("{what}: {trouble}\n{}", logs.join("\n"));
    }
    outputs
}

/// Waits for every process at most `limit`, whether or not some fail; the
/// ones still running then are killed and come back as `None` (their stderr
/// is printed), so a test can assert which processes stopped by themselves.
pub fn wait_each(
    children: Vec<std::process::Child>,
    limit: std::time::Duration,
) -> Vec<Option<std::process::Output>> {
    let (outputs, _) = collect(children, limit, false);
    outputs
        .into_iter()
        .enumerate()
        .map(|(k, (o, by_itself))| {
            if !by_itself {
                eprintln!(
                    "process {k} killed after {limit:?}: {}",
                    tail(&String::from_utf8_lossy(&o.stderr), 15)
                );
            }
            by_itself.then_some(o)
        })
        .collect()
}

/// Runs `children` to their end or to `limit` (or, with `stop_on_failure`,
/// to the first failure), kills the rest, and returns each one's output with
/// whether it exited by itself. The pipes are drained on threads: a chatty
/// child must never block on a full pipe the test is not reading.
fn collect(
    mut children: Vec<std::process::Child>,
    limit: std::time::Duration,
    stop_on_failure: bool,
) -> (Vec<(std::process::Output, bool)>, Option<String>) {
    use std::io::Read;
    let began = std::time::Instant::now();
    fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let pipes: Vec<_> = children
        .iter_mut()
        .map(|c| (drain(c.stdout.take()), drain(c.stderr.take())))
        .collect();
    let mut status: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
    let mut trouble = None;
    while status.iter().any(|s| s.is_none()) {
        for (c, s) in children.iter_mut().zip(status.iter_mut()) {
            if s.is_none() {
                *s = c.try_wait().expect("poll child");
            }
        }
        let failed = status.iter().position(|s| s.is_some_and(|s| !s.success()));
        if let (true, Some(k)) = (stop_on_failure, failed) {
            trouble = Some(format!("process {k} failed"));
        } else if began.elapsed() > limit {
            trouble = Some(format!("still running after {limit:?}"));
        }
        if trouble.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (c, s) in children.iter_mut().zip(&status) {
        if s.is_none() {
            let _ = c.kill();
        }
    }
    let outputs = children
        .into_iter()
        .zip(pipes)
        .zip(status)
        .map(|((mut c, (out, err)), s)| {
            let output = std::process::Output {
                status: c.wait().expect("reap child"),
                stdout: out.join().unwrap_or_default(),
                stderr: err.join().unwrap_or_default(),
            };
            (output, s.is_some())
        })
        .collect();
    (outputs, trouble)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Runs `cmd` to its end and asserts that it succeeded; `what` and its
/// stderr make the failure's message. Its output.
pub fn run_ok(cmd: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a hostfile for `n` processes on free localhost ports into `dir`;
/// its path, for `-h`.
pub fn hostfile(dir: &Path, n: u16) -> String {
    let base = free_ports(n);
    let path = dir.join("hosts");
    let lines: String = (0..n)
        .map(|i| format!("127.0.0.1:{}\n", base + i))
        .collect();
    std::fs::write(&path, lines).expect("hostfile");
    path.display().to_string()
}

/// Starts the processes of a cluster on the hosts of `hosts` (from
/// [`hostfile`]), `workers` workers each.
pub fn spawn_cluster(
    job: &Path,
    hosts: &str,
    n: usize,
    workers: usize,
) -> Vec<std::process::Child> {
    spawn_cluster_with(job, hosts, n, workers, &[])
}

/// [`spawn_cluster`] with `env` added to each process's environment.
pub fn spawn_cluster_with(
    job: &Path,
    hosts: &str,
    n: usize,
    workers: usize,
    env: &[(&str, &str)],
) -> Vec<std::process::Child> {
    let (w, n_s) = (workers.to_string(), n.to_string());
    (0..n)
        .map(|p| {
            let args = ["-w", &w, "-n", &n_s, "-p", &p.to_string(), "-h", hosts];
            spawn_job_with(job, &args, env)
        })
        .collect()
}

/// Runs a cluster of `n` processes on localhost to its end (at most five
/// minutes); how many records each read.
pub fn run_cluster_to_end(job: &Path, dir: &Path, n: usize, workers: usize) -> Vec<u64> {
    let hosts = hostfile(dir, n as u16);
    let children = spawn_cluster(job, &hosts, n, workers);
    let outs = wait_group(children, std::time::Duration::from_secs(300), "a cluster");
    outs.iter().map(records_read).collect()
}
