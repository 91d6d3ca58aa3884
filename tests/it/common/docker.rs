//! Containers: the images `scripts/image.sh` makes and the Compose
//! deployment `deploy/compose.yml` (broker, S3 store and three job
//! processes, each a container with its own hostname and address).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::{run_ok, scratch, script, S3_KEY_ID, S3_SECRET};

/// The job containers of `deploy/compose.yml`, in ordinal order.
pub const JOBS: [&str; 3] = ["popularity-0", "popularity-1", "popularity-2"];

/// Builds the runtime image around this build's binary and the infra image,
/// once per test process (the base image only when the machine lacks it).
pub fn images() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        run_ok(
            Command::new("bash")
                .arg(script("image.sh"))
                .arg("build")
                .arg(env!("CARGO_BIN_EXE_popularity")),
            "image.sh build",
        );
        run_ok(
            Command::new("bash").arg(script("image.sh")).arg("infra"),
            "image.sh infra",
        );
    });
}

/// `docker` with `args`, its output whatever the status.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// `docker` with `args`, which must succeed.
fn docker_ok(args: &[&str]) {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One Compose project of `deploy/compose.yml`, taken down (with its
/// network) on drop.
pub struct Deployment {
    project: String,
    dir: PathBuf,
}

impl Deployment {
    /// A project named after `name` whose jobs run `job` (TOML).
    pub fn new(name: &str, job: &str) -> Deployment {
        images();
        let dir = scratch(&format!("compose-{name}"));
        let project = format!("pop{}{}", name.replace(['-', '_'], ""), std::process::id());
        let d = Deployment { project, dir };
        d.set_job(job);
        std::fs::write(
            d.dir.join("secrets.env"),
            format!("AWS_ACCESS_KEY_ID={S3_KEY_ID}\nAWS_SECRET_ACCESS_KEY={S3_SECRET}\nAWS_REGION=garage\n"),
        )
        .expect("secrets file");
        d
    }

    /// Rewrites the job file the job containers mount.
    pub fn set_job(&self, job: &str) {
        std::fs::write(self.dir.join("job.toml"), job).expect("job file");
    }

    fn compose(&self, args: &[&str]) -> Output {
        self.compose_with(args, &[])
    }

    /// `docker-compose` with `args`; `env` sets the file's settings
    /// (`REPLICAS`, `POPULARITY_TAG`).
    fn compose_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose.yml");
        Command::new("docker-compose")
            .args(["-p", &self.project, "-f"])
            .arg(file)
            .args(args)
            .env("JOB_FILE", self.dir.join("job.toml"))
            .env("SECRETS_FILE", self.dir.join("secrets.env"))
            .envs(env.iter().copied())
            .output()
            .expect("run docker-compose")
    }

    fn compose_ok(&self, args: &[&str]) -> Output {
        self.compose_ok_with(args, &[])
    }

    fn compose_ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.compose_with(args, env);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts (or recreates, with `fresh`) `services`.
    pub fn up(&self, services: &[&str], fresh: bool) {
        self.up_with(services, fresh, &[]);
    }

    /// As [`Deployment::up`], with the file's settings `env`; a service
    /// whose settings changed is recreated (stopped with SIGTERM first).
    pub fn up_with(&self, services: &[&str], fresh: bool, env: &[(&str, &str)]) {
        let mut args = vec!["up", "-d", "--no-deps"];
        if fresh {
            args.push("--force-recreate");
        }
        args.extend_from_slice(services);
        self.compose_ok_with(&args, env);
    }

    /// Stops `services` with SIGTERM (and SIGKILL after the grace period).
    pub fn stop(&self, services: &[&str]) {
        let mut args = vec!["stop", "-t", "120"];
        args.extend_from_slice(services);
        self.compose_ok(&args);
    }

    /// Restarts `service` (SIGTERM, then start).
    pub fn restart(&self, service: &str) {
        self.compose_ok(&["restart", "-t", "10", service]);
    }

    /// Starts the S3 store with the bucket `popularity`, then the broker
    /// (its log in memory) with `topics` (name, partitions); returns (broker
    /// address, S3 endpoint), both container addresses this host reaches
    /// directly.
    pub fn infra(&self, topics: &[(&str, u32)]) -> (String, String) {
        self.infra_with(topics, false)
    }

    /// As [`Deployment::infra`]; with `durable_broker` the broker keeps its
    /// log in the S3 container (bucket `tansu`), so a restart keeps it.
    pub fn infra_with(&self, topics: &[(&str, u32)], durable_broker: bool) -> (String, String) {
        self.up(&["garage"], false);
        let dir = "/home/infra/garage";
        let mut buckets = vec!["popularity"];
        if durable_broker {
            buckets.push("tansu");
        }
        for bucket in buckets {
            self.retry_exec(
                "garage",
                &["bash", "/opt/garage.sh", "bucket", bucket, "--dir", dir],
            );
        }
        let storage = if durable_broker {
            "s3://tansu/"
        } else {
            "memory://tansu/"
        };
        self.up_with(&["kafka"], false, &[("KAFKA_STORAGE", storage)]);
        for (name, parts) in topics {
            let p = parts.to_string();
            let broker = "tcp://127.0.0.1:9092";
            let create = [
                "tansu",
                "topic",
                "create",
                name,
                "--partitions",
                &p,
                "--broker",
                broker,
            ];
            self.retry_exec("kafka", &create);
        }
        (
            format!("{}:9092", self.ip("kafka")),
            format!("http://{}:3900", self.ip("garage")),
        )
    }

    fn retry_exec(&self, service: &str, args: &[&str]) {
        let started = Instant::now();
        loop {
            let mut all = vec!["exec", "-T", service];
            all.extend_from_slice(args);
            let out = self.compose(&all);
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{service} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The container id of `service`.
    pub fn container(&self, service: &str) -> String {
        let out = self.compose_ok(&["ps", "-q", service]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let out = docker(&["inspect", "-f", format, &self.container(service)]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The address of `service` on the deployment's network.
    pub fn ip(&self, service: &str) -> String {
        self.inspect(
            service,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
    }

    /// (running, exit code, restarts) of `service`.
    pub fn state(&self, service: &str) -> (bool, i32, u32) {
        let s = self.inspect(
            service,
            "{{.State.Running}} {{.State.ExitCode}} {{.RestartCount}}",
        );
        let f: Vec<&str> = s.split(' ').collect();
        (
            f[0] == "true",
            f[1].parse().expect("exit code"),
            f[2].parse().expect("restarts"),
        )
    }

    /// Kills `service`'s process with SIGKILL from outside, as the kernel's
    /// OOM killer or a crash would: the restart policy applies. (`docker
    /// kill` counts as stopping it by hand, which the policy leaves down.)
    pub fn crash(&self, service: &str) {
        let pid = self.inspect(service, "{{.State.Pid}}");
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {pid} ({service})");
    }

    /// The deployment's network, as Compose names it.
    fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// Takes `service` off the network, as a lost link or a partitioned
    /// node would: its process keeps running, nothing is closed, packets
    /// to and from it are dropped.
    pub fn cut_off(&self, service: &str) {
        let container = self.container(service);
        docker_ok(&["network", "disconnect", &self.network(), &container]);
    }

    /// Puts `service` back on the network under its name.
    pub fn reconnect(&self, service: &str) {
        let container = self.container(service);
        let network = self.network();
        docker_ok(&[
            "network", "connect", "--alias", service, &network, &container,
        ]);
    }

    /// Waits until every one of `services` has exited for good (not
    /// restarting); returns their exit codes, or panics with their logs.
    pub fn wait_exited(&self, services: &[&str], limit: Duration) -> Vec<i32> {
        let started = Instant::now();
        loop {
            let states: Vec<(bool, i32, u32)> = services.iter().map(|s| self.state(s)).collect();
            let restarting = services
                .iter()
                .any(|s| self.inspect(s, "{{.State.Restarting}}") == "true");
            if states.iter().all(|s| !s.0) && !restarting {
                return states.iter().map(|s| s.1).collect();
            }
            if started.elapsed() > limit {
                panic!(
                    "{services:?} still running after {limit:?}: {}",
                    self.logs(services)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The last lines each of `services` logged.
    pub fn logs(&self, services: &[&str]) -> String {
        let mut args = vec!["logs", "--no-color", "--tail", "40"];
        args.extend_from_slice(services);
        String::from_utf8_lossy(&self.compose(&args).stdout).into_owned()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "5", "--remove-orphans"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
