//! A real S3 store: single-node Garage (`scripts/garage.sh`).

use std::path::PathBuf;

use super::{free_port, run_ok, scratch, script};

/// A real S3 store (single-node Garage) started by `scripts/garage.sh`, stopped on drop.
pub struct S3 {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    /// S3 API port.
    pub port: u16,
    dir: PathBuf,
}

/// Access key of the test store.
pub const S3_KEY_ID: &str = "GK0123456789abcdef01234567";
/// Secret of the test store.
pub const S3_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

impl S3 {
    /// Starts a fresh store.
    pub fn start(name: &str) -> S3 {
        // Garage uses the port and the two after it.
        let port = loop {
            let p = free_port();
            if p < 65_000
                && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
            {
                break p;
            }
        };
        let dir = scratch(&format!("garage-{name}"));
        let s3 = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            dir,
        };
        s3.up();
        s3
    }

    fn run(&self, args: &[&str]) {
        run_ok(
            std::process::Command::new("bash")
                .arg(script("garage.sh"))
                .args(args)
                .args(["--port", &self.port.to_string(), "--dir"])
                .arg(&self.dir),
            &format!("garage.sh {args:?} failed"),
        );
    }

    /// (Re)starts the server.
    pub fn up(&self) {
        self.run(&["start"]);
    }

    /// Stops the server.
    pub fn down(&self) {
        self.run(&["stop"]);
    }

    /// Freezes the server (SIGSTOP): connections open, nothing answers, as
    /// a hung store behaves. [`S3::down`] still stops it.
    pub fn freeze(&self) {
        let pid = std::fs::read_to_string(self.dir.join("garage.pid")).expect("garage.pid");
        let status = std::process::Command::new("kill")
            .args(["-STOP", pid.trim()])
            .status()
            .expect("kill -STOP");
        assert!(status.success(), "froze garage {pid}");
    }

    /// Creates a bucket the test key may use.
    pub fn bucket(&self, name: &str) {
        self.run(&["bucket", name]);
    }

    /// Environment for S3 clients of this store.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET.into()),
            ("AWS_REGION".into(), "garage".into()),
            ("AWS_DEFAULT_REGION".into(), "garage".into()),
            ("AWS_ENDPOINT".into(), self.endpoint.clone()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl S3 {
    /// A store configuration for `bucket`/`prefix` in this Garage, with the test key.
    pub fn config(&self, bucket: &str, prefix: &str) -> popularity::sink::s3::S3Config {
        popularity::sink::s3::S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: "garage".into(),
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            access_key_id: Some(S3_KEY_ID.into()),
            secret_access_key: Some(S3_SECRET.into()),
            ..popularity::sink::s3::S3Config::default()
        }
    }
}
