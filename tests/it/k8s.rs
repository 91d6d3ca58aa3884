//! The Kubernetes manifests, rendered and validated offline
//! (`scripts/k8s_check.py`: real kustomize through `kubectl kustomize`,
//! Kubernetes schemas, project invariants), and the job file they carry
//! parsed by the job's own parser.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(overlay: &Path, dump: bool) -> std::process::Output {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("scripts/k8s_check.py")).arg(overlay);
    if dump {
        cmd.arg("--dump");
    }
    cmd.output().expect("run k8s_check.py")
}

#[test]
fn overlays_render_validate_and_carry_a_valid_job() {
    for overlay in ["local", "production"] {
        let out = check(&root().join("k8s/overlays").join(overlay), true);
        assert!(
            out.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let objs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        for k in ["StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap"] {
            assert!(kinds.contains(&k), "{overlay}: no {k}");
        }
        let job = objs
            .iter()
            .find(|o| o["kind"] == "ConfigMap")
            .expect("configmap")["data"]["job.toml"]
            .as_str()
            .expect("job.toml")
            .to_string();
        // The container's POPULARITY__* variables apply on top, as in the pod.
        let sts = objs
            .iter()
            .find(|o| o["kind"] == "StatefulSet")
            .expect("statefulset");
        let env: Vec<(String, String)> = sts["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_string(),
                    e["value"].as_str()?.to_string(),
                ))
            })
            .collect();
        let parsed = popularity::config::JobConfig::parse(&job, env)
            .unwrap_or_else(|e| panic!("{overlay}: job.toml: {e}"));
        assert_eq!(parsed.source.kind, popularity::config::SourceKind::Kafka);
        assert!(
            !parsed.metrics.port_per_process,
            "{overlay}: one metrics port per pod"
        );
        assert_eq!(parsed.metrics.address(3).expect("address"), "0.0.0.0:9464");
    }
}

/// Copies k8s/ to a scratch directory and applies `edit` to one file.
fn broken(name: &str, file: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("popularity-k8s-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for entry in ["base", "overlays/local", "overlays/production"] {
        let from = root().join("k8s").join(entry);
        let to = dir.join(entry);
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in std::fs::read_dir(&from).expect("list").flatten() {
            std::fs::copy(f.path(), to.join(f.file_name())).expect("copy");
        }
    }
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    let changed = edit(text.clone());
    assert_ne!(text, changed, "the edit must change {file}");
    std::fs::write(&path, changed).expect("write");
    dir
}

/// A way to break a manifest: (name, file, edit, expected message).
type Breakage = (
    &'static str,
    &'static str,
    Box<dyn Fn(String) -> String>,
    &'static str,
);

#[test]
fn the_checks_catch_inconsistent_manifests() {
    let cases: Vec<Breakage> = vec![
        (
            "replicas",
            "overlays/production/kustomization.yaml",
            Box::new(|t| t.replacen("value: 4\n", "value: 5\n", 1)),
            "disagree with REPLICAS",
        ),
        (
            "probe",
            "base/statefulset.yaml",
            Box::new(|t| {
                t.replace(
                    "httpGet: {path: /readyz, port: 9464}",
                    "httpGet: {path: /readyz, port: 9465}",
                )
            }),
            "metrics port disagrees",
        ),
        (
            "headless",
            "base/service.yaml",
            Box::new(|t| {
                t.replace(
                    "publishNotReadyAddresses: true",
                    "publishNotReadyAddresses: false",
                )
            }),
            "headless",
        ),
        (
            "grace",
            "base/statefulset.yaml",
            Box::new(|t| {
                t.replace(
                    "terminationGracePeriodSeconds: 120",
                    "terminationGracePeriodSeconds: 30",
                )
            }),
            "stop-timeout",
        ),
        (
            "schema",
            "base/pdb.yaml",
            Box::new(|t| t.replace("maxUnavailable: 1", "maxUnavailable: 1\n  maxUnavalable: 2")),
            "StatefulSet|PodDisruptionBudget",
        ),
    ];
    for (name, file, edit, expect) in cases {
        let dir = broken(name, file, edit);
        let out = check(&dir.join("overlays/production"), false);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: the check passed a broken manifest"
        );
        assert!(
            expect.split('|').any(|e| err.contains(e)),
            "{name}: unexpected message {err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_container_image_is_multi_stage_non_root_with_the_binary_as_entrypoint() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "a build stage and a runtime stage"
    );
    assert!(text.contains("cargo build --release --locked"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.trim().ends_with(" 0")),
        "runs as non-root"
    );
    assert!(text.contains("ENTRYPOINT [\"popularity\"]"));
    // The image around a host-built binary is the same runtime: the same
    // lines after the base, the same files copied to the same places.
    let host =
        std::fs::read_to_string(root().join("deploy/host.Dockerfile")).expect("host.Dockerfile");
    let runtime = |t: &str| -> Vec<String> {
        let stage = &t[t.rfind("\nFROM ").expect("a runtime stage")..];
        stage
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.strip_prefix("COPY ") {
                Some(c) => format!("COPY -> {}", c.rsplit(' ').next().unwrap_or("")),
                None => l.to_string(),
            })
            .collect()
    };
    assert_eq!(
        runtime(&text),
        runtime(&format!("\n{host}")),
        "Dockerfile and deploy/host.Dockerfile differ"
    );
}
