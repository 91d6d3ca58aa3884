//! A TLS terminator (stunnel, via `scripts/tls-proxy.sh`) in front of a
//! test's broker or store, with a test certificate authority.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run_ok, script};

/// Writes a CA (`ca.pem`), a server certificate for 127.0.0.1 signed by it
/// and an unrelated CA (`other-ca.pem`) into `dir`.
pub fn make_pki(dir: &Path) {
    run_ok(
        Command::new("bash")
            .arg(script("tls-proxy.sh"))
            .arg("pki")
            .arg(dir),
        "pki",
    );
}

/// A TLS port in front of a plain one, stopped on drop.
pub struct TlsProxy {
    dir: PathBuf,
}

impl TlsProxy {
    /// Accepts TLS on `accept` (certificates of [`make_pki`] in `dir`) and
    /// forwards to `connect`.
    pub fn start(dir: &Path, accept: u16, connect: u16) -> TlsProxy {
        run_ok(
            Command::new("bash")
                .arg(script("tls-proxy.sh"))
                .args([
                    "start",
                    "--accept",
                    &accept.to_string(),
                    "--connect",
                    &connect.to_string(),
                    "--dir",
                ])
                .arg(dir),
            "TLS proxy",
        );
        TlsProxy {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("tls-proxy.sh"))
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .output();
    }
}
