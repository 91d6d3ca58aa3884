#!/usr/bin/env python3
"""Renders the kustomize overlays in k8s/ and checks them offline.

usage: k8s_check.py OVERLAY_DIR [--kubernetes-version V] [--dump]

The overlay is rendered by real kustomize (`kubectl kustomize`, Kustomize
v5 inside kubectl). Every rendered object is then validated against the
Kubernetes schemas (kubernetes-validate, strict), and the project's own
invariants are checked. With --dump, prints the rendered objects as JSON.
"""
import json
import re
import subprocess
import sys

import kubernetes_validate
import yaml

def fail(msg):
    print(f"k8s check failed: {msg}", file=sys.stderr)
    sys.exit(1)


def render(directory):
    """The overlay's objects as `kubectl kustomize` renders them."""
    try:
        out = subprocess.run(["kubectl", "kustomize", directory],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        fail("kubectl is not installed; it renders the overlays (kustomize)")
    if out.returncode != 0:
        fail(f"kubectl kustomize {directory}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check(objs, version):
    for o in objs:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{o['kind']}/{o['metadata']['name']}: {e.message} at {'/'.join(map(str, e.path))}")
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    [sts] = by_kind["StatefulSet"]
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    replicas = spec["replicas"]
    env = env_of(container)
    if int(env["REPLICAS"]["value"]) != replicas:
        fail(f"replicas {replicas} disagree with REPLICAS ({env['REPLICAS']['value']})")
    # deploy/start.sh writes the hostfile from PEER and takes -p from the ordinal.
    if container.get("command") != ["popularity-start"] or container.get("args"):
        fail("the container must start with popularity-start (deploy/start.sh), no args")
    for var in ["WORKERS", "PEER", "HOSTFILE"]:
        if var not in env:
            fail(f"the container does not set {var} for popularity-start")
    # The hostfile lists one entry per replica, named after the StatefulSet and its Service.
    peer = env["PEER"]["value"]
    svc_name = spec["serviceName"]
    if not peer.startswith(f"{sts['metadata']['name']}-{{i}}.{svc_name}."):
        fail("the hostfile entries do not follow <sts>-<i>.<svc> for each replica")
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    if not any(env["HOSTFILE"]["value"].startswith(m.rstrip("/") + "/") for m in mounts):
        fail("HOSTFILE must be on a mounted volume")
    if spec.get("podManagementPolicy") != "Parallel":
        fail("podManagementPolicy must be Parallel: every process must start")
    svc = services.get(svc_name) or fail(f"no Service {svc_name}")
    if svc["spec"].get("clusterIP") != "None" or not svc["spec"].get("publishNotReadyAddresses"):
        fail("the Service must be headless with publishNotReadyAddresses")
    pod_labels = spec["template"]["metadata"]["labels"]
    if any(pod_labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        fail("the Service selector does not select the pods")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    svc_ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    if ports != svc_ports:
        fail(f"Service ports {svc_ports} differ from container ports {ports}")
    metrics = ports["metrics"]
    ann = spec["template"]["metadata"]["annotations"]
    listen = env["POPULARITY__METRICS__LISTEN"]["value"]
    probe_ports = {container["readinessProbe"]["httpGet"]["port"], container["livenessProbe"]["httpGet"]["port"]}
    if int(ann["prometheus.io/port"]) != metrics or probe_ports != {metrics} or not listen.endswith(f":{metrics}"):
        fail(f"metrics port disagrees: container {metrics}, annotation {ann['prometheus.io/port']}, probes {probe_ports}, listen {listen}")
    if env.get("POPULARITY__METRICS__PORT_PER_PROCESS", {}).get("value") != "false":
        fail("each pod has its own address: the metrics port must not be offset by the process index")
    if not peer.endswith(f":{ports['dataflow']}"):
        fail("the hostfile port and the dataflow port differ")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if any(pod_labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
            fail("the PodDisruptionBudget does not select the pods")
    if not by_kind.get("PodDisruptionBudget"):
        fail("no PodDisruptionBudget")
    cms = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    vol = next(v for v in pod["volumes"] if v["name"] == "job")
    job = cms.get(vol["configMap"]["name"]) or fail("the job ConfigMap is missing")
    toml = job["data"]["job.toml"]
    m = re.search(r'stop-timeout\s*=\s*"(\d+)s"', toml)
    stop = int(m.group(1)) if m else 60
    if pod.get("terminationGracePeriodSeconds", 30) <= stop:
        fail(f"terminationGracePeriodSeconds must exceed the checkpoint stop-timeout ({stop}s)")
    for e in env.values():
        if e["name"].startswith("AWS_") and "secretKeyRef" not in e.get("valueFrom", {}):
            fail(f"{e['name']} must come from a Secret")
    for secret_var in re.findall(r'=\s*"([A-Z_]+)"', toml.split("secret-properties", 1)[1].split("\n")[0]) if "secret-properties" in toml else []:
        if secret_var not in env or "secretKeyRef" not in env[secret_var].get("valueFrom", {}):
            fail(f"secret property variable {secret_var} must come from a Secret")
    return objs


def main():
    args = sys.argv[1:]
    if not args:
        fail(__doc__)
    version = "1.30.0"
    if "--kubernetes-version" in args:
        version = args[args.index("--kubernetes-version") + 1]
    objs = check(render(args[0]), version)
    if "--dump" in args:
        print(json.dumps(objs))
    else:
        print(f"{args[0]}: {len(objs)} objects valid for Kubernetes {version}")


if __name__ == "__main__":
    main()
