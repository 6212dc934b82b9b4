#!/usr/bin/env python3
"""Offline check of deploy/kubernetes/*.yaml (no kubectl or cluster here).

With PyYAML (Debian python3-yaml): every document parses, has apiVersion, kind and
metadata.name, and the cross-references the KMS depends on hold: probe paths and ports match
--health-listen, the Services select the KMS pods and name a container port, the peers Service
is headless and publishes not-ready addresses, the PDB and NetworkPolicy select the KMS, the
Deployment keeps maxUnavailable 0 over 3 replicas with SGX device-plugin resources, and the app's
OCCLUM_INIT_RA_KMS_SERVER names Services and ports that exist. Without PyYAML: a tiny syntax
check (no tabs, document separators, key: value lines) and a note that the deep check did not
run. Exit 1 on any failure, naming the file and what is wrong.
"""

import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
errors = []


def fail(msg):
    errors.append(msg)


def tiny_check(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if "\t" in line:
                fail(f"{path}:{n}: tab character (YAML indents with spaces)")
            s = line.strip()
            if not s or s.startswith("#") or s == "---" or s.startswith("- "):
                continue
            if ":" not in s and not s.startswith("-"):
                fail(f"{path}:{n}: neither a key: value line nor a list item: {s!r}")


def by_kind(docs, kind, name):
    for path, d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return path, d
    fail(f"no {kind} {name}")
    return None, {}


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def deep_check(docs):
    for path, d in docs:
        for key in ("apiVersion", "kind"):
            if key not in d:
                fail(f"{path}: a document without {key}")
        if not d.get("metadata", {}).get("name"):
            fail(f"{path}: {d.get('kind')} without metadata.name")

    path, kms = by_kind(docs, "Deployment", "occlum-kms")
    if not kms:
        return
    spec = kms["spec"]
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    if spec.get("replicas") != 3:
        fail(f"{path}: occlum-kms replicas {spec.get('replicas')}, expected 3")
    if spec["strategy"]["rollingUpdate"].get("maxUnavailable") != 0:
        fail(f"{path}: occlum-kms rollingUpdate.maxUnavailable must be 0")
    if not selects(spec["selector"]["matchLabels"], labels):
        fail(f"{path}: occlum-kms selector does not match its pod labels")
    if not pod["spec"].get("topologySpreadConstraints"):
        fail(f"{path}: occlum-kms has no topologySpreadConstraints")
    (c,) = pod["spec"]["containers"]
    args = c["args"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for flag in ("--etcd", "--peers", "--health-listen"):
        if flag not in args:
            fail(f"{path}: kms args lack {flag}")
    health = args[args.index("--health-listen") + 1] if "--health-listen" in args else ""
    if not health.endswith(f":{ports.get('health')}"):
        fail(f"{path}: --health-listen {health} is not the container port 'health' ({ports.get('health')})")
    main = args[args.index("/bin/server") + 1]
    if not main.endswith(f":{ports.get('grpc-ratls')}"):
        fail(f"{path}: listen address {main} is not the container port 'grpc-ratls'")
    for probe, want in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != want or get.get("port") not in ("health", ports.get("health")):
            fail(f"{path}: {probe} must GET {want} on the health port, has {get}")
    limits = c["resources"]["limits"]
    for res in ("sgx.intel.com/epc", "sgx.intel.com/enclave", "sgx.intel.com/provision"):
        if res not in limits:
            fail(f"{path}: kms container does not request {res}")
    if c.get("securityContext", {}).get("privileged"):
        fail(f"{path}: kms container is privileged (use the SGX device plugin)")

    services = {}
    for spath, d in docs:
        if d.get("kind") == "Service":
            services[(d["metadata"]["name"], d["metadata"].get("namespace"))] = d
    ns = kms["metadata"]["namespace"]
    for name, headless in (("occlum-kms", False), ("occlum-kms-peers", True)):
        svc = services.get((name, ns))
        if svc is None:
            fail(f"no Service {name} in {ns}")
            continue
        s = svc["spec"]
        if not selects(s["selector"], labels):
            fail(f"Service {name} does not select the KMS pods")
        for p in s["ports"]:
            if p["targetPort"] not in ports and p["targetPort"] not in ports.values():
                fail(f"Service {name} targets port {p['targetPort']}, not a KMS container port")
        if headless and (s.get("clusterIP") != "None" or not s.get("publishNotReadyAddresses")):
            fail(f"Service {name} must be headless with publishNotReadyAddresses: true")
        if not headless and s.get("clusterIP") == "None":
            fail(f"Service {name} must be a ClusterIP Service")
    if "occlum-kms-peers." not in " ".join(args):
        fail(f"{path}: --peers does not name the headless occlum-kms-peers Service")

    ppath, pdb = by_kind(docs, "PodDisruptionBudget", "occlum-kms")
    if pdb and not selects(pdb["spec"]["selector"]["matchLabels"], labels):
        fail(f"{ppath}: the PDB does not select the KMS pods")
    npath, np = by_kind(docs, "NetworkPolicy", "occlum-kms")
    if np and not selects(np["spec"]["podSelector"]["matchLabels"], labels):
        fail(f"{npath}: the NetworkPolicy does not select the KMS pods")
    if np:
        allowed = {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]}
        for port in (ports.get("grpc-ratls"), ports.get("health")):
            if port not in allowed:
                fail(f"{npath}: ingress to port {port} is not allowed")

    epath, etcd = by_kind(docs, "StatefulSet", "etcd")
    if etcd:
        etcd_args = etcd["spec"]["template"]["spec"]["containers"][0]["command"]
        if etcd["spec"].get("replicas") != 3:
            fail(f"{epath}: the demo etcd should have 3 members")
        if any("enable-grpc-gateway=false" in a for a in etcd_args):
            fail(f"{epath}: the KMS needs etcd's JSON gateway")
        etcd_urls = args[args.index("--etcd") + 1].split(",")
        members = [f"http://etcd-{i}.etcd.{ns}.svc:2379" for i in range(etcd["spec"]["replicas"])]
        if etcd_urls != members:
            fail(f"{path}: --etcd {etcd_urls} is not the demo etcd's members {members}")

    apath, app = by_kind(docs, "Deployment", "occlum-app")
    if app:
        (ac,) = app["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value", "") for e in ac.get("env", [])}
        value = env.get("OCCLUM_INIT_RA_KMS_SERVER", "")
        if not value:
            fail(f"{apath}: the app sets no OCCLUM_INIT_RA_KMS_SERVER")
        for addr in filter(None, value.split(",")):
            host, _, port = addr.strip().rpartition(":")
            name, _, rest = host.partition(".")
            svc_ns = rest.split(".")[0] if rest else app["metadata"]["namespace"]
            svc = services.get((name, svc_ns))
            if svc is None:
                fail(f"{apath}: OCCLUM_INIT_RA_KMS_SERVER names {addr}: no Service {name} in {svc_ns}")
            elif int(port) not in [p["port"] for p in svc["spec"]["ports"]]:
                fail(f"{apath}: OCCLUM_INIT_RA_KMS_SERVER names {addr}: Service {name} has no port {port}")
        client_label = app["spec"]["template"]["metadata"]["labels"].get("occlum-kms-client")
        if client_label != "true":
            fail(f"{apath}: app pods lack the occlum-kms-client label the NetworkPolicy admits")


def main():
    paths = sorted(glob.glob(os.path.join(HERE, "*.yaml")))
    if not paths:
        fail(f"no manifests in {HERE}")
    try:
        import yaml  # noqa: PLC0415 (optional dependency)
    except ImportError:
        yaml = None
    if yaml is None:
        for path in paths:
            tiny_check(path)
        print("deploy/kubernetes: PyYAML missing (apt-get install python3-yaml): tiny syntax check only")
    else:
        docs = []
        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    docs += [(os.path.basename(path), d) for d in yaml.safe_load_all(f) if d is not None]
            except yaml.YAMLError as e:
                fail(f"{path}: {e}")
        if not errors:
            deep_check(docs)
        if not errors:
            print(
                f"deploy/kubernetes: {len(docs)} documents in {len(paths)} files parsed and "
                "cross-checked (no kubectl here: not validated against a cluster's schemas)"
            )
    for e in errors:
        print(f"deploy/kubernetes: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


main()
