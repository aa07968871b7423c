#!/usr/bin/env python3
"""Checks the Helm chart in helm/customer-knowledge without a cluster.

Uses Helm's own engine (PyPI helm-python-sdk, the official Helm Go SDK behind
a C ABI) to lint and render the chart, and kubernetes-validate's offline
OpenAPI schemas to validate every rendered manifest. Run it with
scripts/check-helm.sh, or directly in an environment with both packages:

    python tests/helm/test_chart.py

Prints one line per check and a closing "N passed, N failed" line; exits
non-zero when any check fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "customer-knowledge"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
RELEASE = "ck"
NAMESPACE = "customer-knowledge"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the
# newest the installed kubernetes-validate has schemas for.
KUBE_MIN = "1.30"
KUBE_VERSIONS = [KUBE_MIN, kubernetes_validate.utils.latest_version()]
# Kinds whose API group has no schema in kubernetes-validate (CRDs): parsed
# and checked by hand instead.
CRD_GROUPS = ("monitoring.coreos.com",)
UID = 65532
GRPC_PORT = 50051
SYSTEMS_DIR = "/etc/customer-knowledge/systems"
ADMIN_PORT = 9464

passed = 0
failed = 0


def check(what: str, ok: bool, detail: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   - {what}")
    else:
        failed += 1
        print(f"FAIL - {what}" + (f": {detail}" if detail else ""))
    return ok


def section(title: str) -> None:
    print(f"\n== {title}")


def render(values: dict | None = None) -> dict[str, str]:
    """Renders like `helm install` would (schema validation included)."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt") or path.endswith(".tpl"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__source__", path)
                docs.append(doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


def strip(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__source__"}


def lint_errors(values: dict | None = None) -> list[str]:
    report = helm.lint(CHART, values=values, strict=True, kube_version=f"v{KUBE_MIN}.0")
    return list(report.get("errors") or []) + [
        f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2
    ]


def load_production_values() -> dict:
    return yaml.safe_load(PRODUCTION_VALUES.read_text())


# --------------------------------------------------------------------------
# Checks on a set of rendered manifests


def validate_schemas(label: str, docs: list[dict]) -> None:
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        if group in CRD_GROUPS:
            check(
                f"[{label}] {name} ({doc['apiVersion']}): CRD kind parses and has apiVersion/kind/metadata/spec",
                all(k in doc for k in ("apiVersion", "kind", "metadata", "spec")),
            )
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(strip(doc), version, strict=True)
                check(f"[{label}] {name} validates against Kubernetes {version} (strict)", True)
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                check(f"[{label}] {name} validates against Kubernetes {version} (strict)", False, str(e)[:500])


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            specs.append((f"CronJob/{doc['metadata']['name']}",
                          doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return specs


def check_restricted(label: str, docs: list[dict], expect_job: bool, expect_cron: bool = False) -> None:
    """The `restricted` Pod Security Standard on every pod template."""
    specs = pod_specs(docs)
    want = {"Deployment", "Job"} if expect_job else {"Deployment"}
    if expect_cron:
        want.add("CronJob")
    check(f"[{label}] pod templates: {', '.join(sorted(want))}",
          sorted(n.split("/")[0] for n, _ in specs) == sorted(want), str([n for n, _ in specs]))
    for name, spec in specs:
        psc = spec.get("securityContext", {})
        check(f"[{label}] {name}: pod runAsNonRoot true, runAsUser {UID}",
              psc.get("runAsNonRoot") is True and psc.get("runAsUser") == UID, str(psc))
        check(f"[{label}] {name}: pod seccompProfile RuntimeDefault",
              psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", str(psc))
        check(f"[{label}] {name}: no host namespaces",
              not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")))
        check(f"[{label}] {name}: no hostPath volumes",
              not any("hostPath" in v for v in spec.get("volumes", [])))
        check(f"[{label}] {name}: service account token not mounted",
              spec.get("automountServiceAccountToken") is False)
        tmp = [v for v in spec.get("volumes", []) if v["name"] == "tmp"]
        check(f"[{label}] {name}: /tmp is an emptyDir", len(tmp) == 1 and "emptyDir" in tmp[0], str(tmp))
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            cname = f"{name} container {c['name']}"
            check(f"[{label}] {cname}: allowPrivilegeEscalation false", sc.get("allowPrivilegeEscalation") is False)
            check(f"[{label}] {cname}: readOnlyRootFilesystem true", sc.get("readOnlyRootFilesystem") is True)
            check(f"[{label}] {cname}: capabilities drop [ALL], add none",
                  sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"),
                  str(sc.get("capabilities")))
            check(f"[{label}] {cname}: not privileged", not sc.get("privileged"))
            run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            run_as_user = sc.get("runAsUser", psc.get("runAsUser"))
            check(f"[{label}] {cname}: runs as non-root {UID}", run_as_non_root is True and run_as_user == UID)
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
            check(f"[{label}] {cname}: seccompProfile RuntimeDefault", seccomp == "RuntimeDefault")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            check(f"[{label}] {cname}: /tmp mounted from the emptyDir", mounts.get("/tmp") == "tmp", str(mounts))
            db = [e for e in c.get("env", []) if e["name"] == "DATABASE_URL"]
            check(f"[{label}] {cname}: DATABASE_URL from an existing Secret (secretKeyRef)",
                  len(db) == 1 and "secretKeyRef" in db[0].get("valueFrom", {}), str(db))
            check(f"[{label}] {cname}: image set", bool(c.get("image")))


def settings_map(docs: list[dict]) -> dict:
    """The settings ConfigMap (the environment), not the calling-systems file."""
    maps = [d for d in by_kind(docs, "ConfigMap") if not d["metadata"]["name"].endswith("-systems")]
    if len(maps) != 1:
        raise AssertionError(f"expected exactly one settings ConfigMap, found {len(maps)}")
    return maps[0]


def config_of(docs: list[dict]) -> dict[str, str]:
    return settings_map(docs)["data"]


def check_deployment(label: str, docs: list[dict], values: dict) -> None:
    dep = one(docs, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    c = next(x for x in spec["containers"] if x["name"] == "customer-knowledge")
    cfg = config_of(docs)

    check(f"[{label}] Deployment runs `serve`", c.get("args") == ["serve"], str(c.get("args")))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(f"[{label}] container ports grpc={GRPC_PORT} admin={ADMIN_PORT}",
          ports == {"grpc": GRPC_PORT, "admin": ADMIN_PORT}, str(ports))
    if tls_enabled(values):
        # Native gRPC probes cannot speak TLS: the admin port's HTTP
        # endpoints carry the same health.
        for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            p = c.get(probe, {})
            check(f"[{label}] TLS on: {probe} is an HTTP GET of {path} on the admin port",
                  p.get("httpGet") == {"path": path, "port": "admin"} and not ({"grpc", "tcpSocket", "exec"} & p.keys()),
                  str(p))
    else:
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            p = c.get(probe, {})
            check(f"[{label}] {probe} is a native grpc probe on port {GRPC_PORT}",
                  p.get("grpc", {}).get("port") == GRPC_PORT and not ({"httpGet", "tcpSocket", "exec"} & p.keys()), str(p))
        check(f"[{label}] readinessProbe checks the whole server (service \"\")",
              c["readinessProbe"]["grpc"].get("service") == "", str(c["readinessProbe"]))
        check(f"[{label}] livenessProbe checks the process, not the database (service \"liveness\")",
              c["livenessProbe"]["grpc"].get("service") == "liveness", str(c["livenessProbe"]))
    check_tls(label, docs, values)
    grace = int(cfg["CK__SERVER__SHUTDOWN_GRACE_SECS"])
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    check(f"[{label}] terminationGracePeriodSeconds ({spec['terminationGracePeriodSeconds']}) > preStop sleep ({pre_stop}) + CK__SERVER__SHUTDOWN_GRACE_SECS ({grace})",
          spec["terminationGracePeriodSeconds"] > grace + pre_stop)
    check(f"[{label}] env from the chart's ConfigMap",
          c.get("envFrom") == [{"configMapRef": {"name": settings_map(docs)["metadata"]["name"]}}], str(c.get("envFrom")))
    checksum = dep["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config", "")
    check(f"[{label}] pod template carries checksum/config", bool(re.fullmatch(r"[0-9a-f]{64}", checksum)), checksum)
    check(f"[{label}] resources requests set", bool(c.get("resources", {}).get("requests")))
    check(f"[{label}] listens on 0.0.0.0 for gRPC and admin",
          cfg.get("CK__SERVER__GRPC_ADDR") == f"0.0.0.0:{GRPC_PORT}" and cfg.get("CK__SERVER__ADMIN_ADDR") == f"0.0.0.0:{ADMIN_PORT}")
    sa = one(docs, "ServiceAccount") if by_kind(docs, "ServiceAccount") else None
    if sa is not None:
        check(f"[{label}] ServiceAccount does not automount its token", sa.get("automountServiceAccountToken") is False)
        check(f"[{label}] Deployment uses the chart's ServiceAccount",
              spec.get("serviceAccountName") == sa["metadata"]["name"])
    if values.get("autoscaling", {}).get("enabled"):
        check(f"[{label}] replicas left to the HPA", "replicas" not in dep["spec"])
    else:
        want = values.get("replicaCount", 2)
        check(f"[{label}] replicas = {want}", dep["spec"].get("replicas") == want, str(dep["spec"].get("replicas")))


def tls_enabled(values: dict | None) -> bool:
    return bool(((values or {}).get("server") or {}).get("tls", {}).get("enabled"))


def check_tls(label: str, docs: list[dict], values: dict) -> None:
    """[server.tls]: env keys, the projected Secret volume, server pods only."""
    cfg = config_of(docs)
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    volume = next((v for v in spec.get("volumes", []) if v["name"] == "grpc-tls"), None)
    mount = next((m for m in c.get("volumeMounts", []) if m["name"] == "grpc-tls"), None)
    tls_keys = {k: v for k, v in cfg.items() if k.startswith("CK__SERVER__TLS__")}
    if not tls_enabled(values):
        check(f"[{label}] TLS off: no CK__SERVER__TLS__* settings and no TLS volume",
              not tls_keys and volume is None and mount is None, f"{tls_keys} {volume} {mount}")
        return
    tls = values["server"]["tls"]
    client_ca = tls.get("clientCa", {}).get("existingSecret", "")
    directory = (mount or {}).get("mountPath", "?")
    want = {
        "CK__SERVER__TLS__CERT_FILE": f"{directory}/tls.crt",
        "CK__SERVER__TLS__KEY_FILE": f"{directory}/tls.key",
    }
    if client_ca:
        want["CK__SERVER__TLS__CLIENT_CA_FILE"] = f"{directory}/client-ca.crt"
        want["CK__SERVER__TLS__CLIENT_AUTH_OPTIONAL"] = str(bool(tls["clientCa"].get("optional"))).lower()
    check(f"[{label}] TLS on: CK__SERVER__TLS__* name the mounted files", tls_keys == want, f"{tls_keys} != {want}")
    check(f"[{label}] TLS on: the TLS directory is mounted read-only",
          mount is not None and mount.get("readOnly") is True, str(mount))
    sources = (volume or {}).get("projected", {}).get("sources", [])
    files = {item["path"]: (src["secret"]["name"], item["key"]) for src in sources for item in src["secret"]["items"]}
    want_files = {"tls.crt": (tls["existingSecret"], tls.get("certKey", "tls.crt")),
                  "tls.key": (tls["existingSecret"], tls.get("keyKey", "tls.key"))}
    if client_ca:
        want_files["client-ca.crt"] = (client_ca, tls["clientCa"].get("key", "ca.crt"))
    check(f"[{label}] TLS on: the files come from the existing Secrets", files == want_files, f"{files} != {want_files}")
    check(f"[{label}] TLS on: key readable by the pod's group only (0440, fsGroup {UID})",
          (volume or {}).get("projected", {}).get("defaultMode") == 0o440
          and spec["securityContext"].get("fsGroup") == UID, str(volume))
    for job in by_kind(docs, "Job"):
        job_spec = job["spec"]["template"]["spec"]
        check(f"[{label}] TLS on: the migration Job mounts no TLS key (migrate serves nothing)",
              all(v["name"] != "grpc-tls" for v in job_spec.get("volumes", [])))


def check_service(label: str, docs: list[dict]) -> None:
    svc = one(docs, "Service")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    grpc = ports.get("grpc", {})
    check(f"[{label}] Service port named grpc with appProtocol grpc",
          grpc.get("appProtocol") == "grpc" and grpc.get("targetPort") == "grpc", str(grpc))
    check(f"[{label}] Service admin port targets the admin container port",
          ports.get("admin", {}).get("targetPort") == "admin", str(ports.get("admin")))
    dep = one(docs, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    check(f"[{label}] Service selects the server pods",
          all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()))


def check_job(label: str, docs: list[dict]) -> None:
    job = one(docs, "Job")
    ann = job["metadata"].get("annotations", {})
    check(f"[{label}] Job is a pre-install,pre-upgrade hook",
          set(ann.get("helm.sh/hook", "").split(",")) == {"pre-install", "pre-upgrade"}, str(ann))
    check(f"[{label}] Job hook-delete-policy before-hook-creation,hook-succeeded",
          set(ann.get("helm.sh/hook-delete-policy", "").split(",")) == {"before-hook-creation", "hook-succeeded"}, str(ann))
    c = job["spec"]["template"]["spec"]["containers"][0]
    check(f"[{label}] Job runs `customer-knowledge migrate`", c.get("args") == ["migrate"], str(c.get("args")))
    dep_image = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    check(f"[{label}] Job uses the server image", c["image"] == dep_image)
    env = {e["name"]: e.get("value") for e in c.get("env", []) if "value" in e}
    cfg = config_of(docs)
    missing = {k: v for k, v in cfg.items() if env.get(k) != v}
    check(f"[{label}] Job env carries every ConfigMap setting inline (hooks run before the ConfigMap exists)",
          not missing, str(missing))
    check(f"[{label}] Job does not reference the ConfigMap", "envFrom" not in c)
    check(f"[{label}] Job pods are not selected by the Service/PDB/NetworkPolicy (component=migrate)",
          job["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "migrate")
    check(f"[{label}] servers do not migrate at start while the Job does", cfg.get("CK__DATABASE__MIGRATE") == "false")


def check_network_policy(label: str, docs: list[dict]) -> None:
    np = one(docs, "NetworkPolicy")
    rules = np["spec"]["ingress"]
    ports = [[p["port"] for p in r.get("ports", [])] for r in rules]
    check(f"[{label}] NetworkPolicy admits the grpc and admin ports", ["grpc"] in ports and ["admin"] in ports, str(ports))
    check(f"[{label}] NetworkPolicy selects the server pods only",
          np["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "server")


def check_segments_cronjob(label: str, docs: list[dict], values: dict) -> None:
    cron = one(docs, "CronJob")
    spec = cron["spec"]
    c = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    window = values["segments"]["cronJob"].get("windowMonths")
    want = ["recompute-segments"] + ([f"--window-months={window}"] if window else [])
    check(f"[{label}] CronJob runs `customer-knowledge recompute-segments`", c.get("args") == want, str(c.get("args")))
    check(f"[{label}] CronJob never overlaps itself", spec.get("concurrencyPolicy") == "Forbid")
    check(f"[{label}] CronJob schedule from values",
          spec.get("schedule") == values["segments"]["cronJob"].get("schedule", "30 1 * * *"), spec.get("schedule"))
    check(f"[{label}] CronJob reads the server's ConfigMap",
          c.get("envFrom", [{}])[0].get("configMapRef", {}).get("name")
          == one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"])
    check(f"[{label}] CronJob pods are not selected by the Service/PDB/NetworkPolicy (component=segments)",
          spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "segments")


def check_notes(label: str, rendered: dict[str, str], values: dict | None) -> None:
    notes = next((t for p, t in rendered.items() if p.endswith("NOTES.txt")), "")
    grpcurl = "grpcurl -cacert ca.crt -servername " if tls_enabled(values) else "grpcurl -plaintext localhost:50051 list"
    check(f"[{label}] NOTES.txt has the port-forward and grpcurl examples",
          "port-forward" in notes
          and grpcurl in notes
          and ("-plaintext" not in notes) == tls_enabled(values)
          and '-H "authorization: Bearer $TOKEN"' in notes
          and "bank.customerknowledge.v1.CustomerService/GetCustomer" in notes
          and '{"name":"customers/cif-000123"}' in notes)


def check_release(label: str, values: dict | None) -> list[dict] | None:
    section(f"render: {label}")
    try:
        rendered = render(values)
    except helm.HelmError as e:
        check(f"[{label}] renders", False, str(e))
        return None
    check(f"[{label}] renders", True)
    docs = documents(rendered)
    print(f"     rendered: {', '.join(sorted(d['kind'] + '/' + d['metadata']['name'] for d in docs))}")
    validate_schemas(label, docs)
    expect_job = (values or {}).get("database", {}).get("migrationJob", {}).get("enabled", True)
    expect_cron = (values or {}).get("segments", {}).get("cronJob", {}).get("enabled", False)
    check_restricted(label, docs, expect_job, expect_cron)
    if expect_cron:
        check_segments_cronjob(label, docs, values or {})
    check_deployment(label, docs, values or {})
    check_service(label, docs)
    if by_kind(docs, "Job"):
        check_job(label, docs)
    if by_kind(docs, "NetworkPolicy"):
        check_network_policy(label, docs)
    check_notes(label, rendered, values)
    RENDERED[label] = docs
    return docs


RENDERED: dict[str, list[dict]] = {}


# --------------------------------------------------------------------------
# The service's own configuration loader judges the rendered environment


def service_binary() -> Path | None:
    """The built customer-knowledge binary (CK_BIN, else the newest in target/)."""
    if os.environ.get("CK_BIN"):
        return Path(os.environ["CK_BIN"])
    found = [p for p in (ROOT / "target" / "debug" / "customer-knowledge",
                         ROOT / "target" / "release" / "customer-knowledge") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def container_env(docs: list[dict], container: dict) -> dict[str, str]:
    """The environment a container would get, with stand-ins for Secret and
    downward-API values, and files of mounted ConfigMaps written to a temporary
    folder. The database is unreachable on purpose."""
    stand_ins = {
        "DATABASE_URL": "postgres://ck@127.0.0.1:1/ck",
        "CK__DATABASE__READ_URL": "postgres://ck@127.0.0.1:2/ck",
        "CK__AUTH__JWT__HS256_SECRET": "h" * 40,
        "CK__API__PAGE_TOKEN_SECRET": "p" * 40,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-test=1",
    }
    env: dict[str, str] = {"PATH": "/usr/bin:/bin"}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == name)["data"])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = stand_ins.get(e["name"], "stand-in")
        else:
            env[e["name"]] = "stand-in"
    if env.get("CK_CONFIG", "").startswith(SYSTEMS_DIR + "/"):
        data = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-systems"))["data"]
        folder = Path(tempfile.mkdtemp(prefix="ck-chart-"))
        for name, text in data.items():
            (folder / name).write_text(text)
        env["CK_CONFIG"] = str(folder / Path(env["CK_CONFIG"]).name)
    return env


def start_config_checks(label: str, docs: list[dict], binary: Path) -> list:
    """Starts `customer-knowledge migrate` with each pod template's environment:
    a configuration it rejects exits 2 naming the key; an accepted one gets as
    far as the (unreachable) database and exits 1."""
    runs = []
    for name, spec in pod_specs(docs):
        container = spec["containers"][0]
        proc = subprocess.Popen([str(binary), "migrate"], env=container_env(docs, container),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs.append((f"[{label}] {name}: the service accepts the rendered configuration", proc))
    return runs


def finish_config_checks(runs: list) -> None:
    for what, proc in runs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        check(what, proc.returncode not in (0, 2, None) and "invalid configuration" not in err + out,
              f"exit {proc.returncode}: {(err or out).strip()[-400:]}")


# --------------------------------------------------------------------------


def main() -> int:
    print(f"chart: {CHART}")
    print(f"Helm SDK {helm.helm_sdk_version()}; Kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    production = load_production_values()

    section("lint")
    errs = lint_errors()
    check("helm lint --strict (default values)", not errs, "; ".join(errs))
    errs = lint_errors(production)
    check("helm lint --strict (ci/production-values.yaml)", not errs, "; ".join(errs))

    # Default values
    docs = check_release("default", None)
    if docs is not None:
        kinds = {d["kind"] for d in docs}
        check("[default] objects: ConfigMap, Deployment, Service, Job, PDB, NetworkPolicy, ServiceAccount",
              kinds >= {"ConfigMap", "Deployment", "Service", "Job", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"},
              str(kinds))
        check("[default] no HPA and no ServiceMonitor", not kinds & {"HorizontalPodAutoscaler", "ServiceMonitor"})
        cfg = config_of(docs)
        check("[default] auth mode jwt with issuer and audience",
              cfg.get("CK__AUTH__MODE") == "jwt" and cfg.get("CK__AUTH__JWT__ISSUER") and cfg.get("CK__AUTH__JWT__AUDIENCE"))
        check("[default] no OTLP endpoint (export off)", "OTEL_EXPORTER_OTLP_ENDPOINT" not in cfg)
        default_env = {e["name"] for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
        check("[default] no read replica: every read on the primary", "CK__DATABASE__READ_URL" not in default_env,
              str(default_env))

    # Production-like values
    docs = check_release("production", production)
    if docs is not None:
        kinds = {d["kind"] for d in docs}
        check("[production] HPA and ServiceMonitor rendered", {"HorizontalPodAutoscaler", "ServiceMonitor"} <= kinds, str(kinds))
        hpa = one(docs, "HorizontalPodAutoscaler")
        check("[production] HPA autoscaling/v2 3..12 on the Deployment",
              hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] == 12
              and hpa["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"])
        sm = one(docs, "ServiceMonitor")
        ep = sm["spec"]["endpoints"][0]
        check("[production] ServiceMonitor scrapes /metrics on the admin port",
              sm["apiVersion"] == "monitoring.coreos.com/v1" and ep["port"] == "admin" and ep["path"] == "/metrics", str(ep))
        check("[production] ServiceMonitor selects the Service",
              all(one(docs, "Service")["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()))
        cfg = config_of(docs)
        check("[production] OTEL endpoint, service name and sampler wired",
              cfg.get("OTEL_EXPORTER_OTLP_ENDPOINT") == production["otel"]["endpoint"]
              and cfg.get("OTEL_SERVICE_NAME") == "customer-knowledge"
              and cfg.get("OTEL_TRACES_SAMPLER") == "parentbased_traceidratio"
              and cfg.get("OTEL_TRACES_SAMPLER_ARG") == "0.2", str(cfg))
        c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        check("[production] OTEL_EXPORTER_OTLP_HEADERS from a Secret",
              env.get("OTEL_EXPORTER_OTLP_HEADERS", {}).get("valueFrom", {}).get("secretKeyRef") == {"name": "ck-otlp", "key": "headers"})
        check("[production] page token key from a Secret",
              env.get("CK__API__PAGE_TOKEN_SECRET", {}).get("valueFrom", {}).get("secretKeyRef") == {"name": "ck-page-token", "key": "key"})
        check("[production] DATABASE_URL from ck-database/url",
              env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ck-database", "key": "url"})
        check("[production] no HS256 secret in env", "CK__AUTH__JWT__HS256_SECRET" not in env)
        spec = one(docs, "Deployment")["spec"]["template"]["spec"]
        vol = next((v for v in spec["volumes"] if v["name"] == "jwt-public-keys"), {})
        mount = next((m for m in c["volumeMounts"] if m["name"] == "jwt-public-keys"), {})
        keys_file = cfg.get("CK__AUTH__JWT__PUBLIC_KEYS_FILE", "")
        check("[production] JWT public keys mounted read-only from the existing Secret at CK__AUTH__JWT__PUBLIC_KEYS_FILE",
              vol.get("secret", {}).get("secretName") == "ck-jwt-keys"
              and mount.get("readOnly") is True
              and keys_file == f"{mount.get('mountPath')}/keys.pem", f"{vol} {mount} {keys_file}")
        check("[production] image from repository:tag",
              c["image"] == "registry.bank.example/platform/customer-knowledge:0.1.0", c["image"])
        np = one(docs, "NetworkPolicy")
        check("[production] NetworkPolicy restricts egress to DNS + configured rules",
              "Egress" in np["spec"]["policyTypes"] and len(np["spec"]["egress"]) == 3)

    # Valid variants
    variants = {
        "image-digest": {"image": {"digest": "sha256:" + "ab" * 32}},
        "trusted-headers": {"auth": {"mode": "trusted_headers", "trustedHeadersAllowNonLoopback": True}},
        "hs256-only": {"auth": {"jwt": {"publicKeys": {"existingSecret": ""},
                                        "hs256Secret": {"existingSecret": "ck-jwt", "key": "secret"}}}},
        "single-replica-random-page-key": {"replicaCount": 1, "api": {"pageTokenSecret": {"existingSecret": ""}}},
        "no-migration-job": {"database": {"migrationJob": {"enabled": False}}, "networkPolicy": {"enabled": False},
                             "serviceAccount": {"create": False, "name": "existing-sa"}},
        "tls": {"server": {"tls": {"enabled": True, "existingSecret": "ck-grpc-tls"}}},
        "segments-cronjob": {"segments": {"cronJob": {"enabled": True, "schedule": "0 2 * * *", "windowMonths": 6,
                                                      "timeZone": "Asia/Shanghai"}}},
        "mutual-tls": {"server": {"tls": {"enabled": True, "existingSecret": "ck-grpc-tls", "certKey": "server.pem",
                                          "keyKey": "server-key.pem",
                                          "clientCa": {"existingSecret": "ck-client-ca", "key": "ca.pem"}}}},
        "mutual-tls-optional": {"server": {"tls": {"enabled": True, "existingSecret": "ck-grpc-tls",
                                                   "clientCa": {"existingSecret": "ck-grpc-tls", "optional": True}}}},
        "read-replica": {"database": {"readUrlKey": "read-url", "readYourWritesWaitMs": 250}},
        "calling-systems": {"auth": {"systems": {
            "core-banking": {"methods": ["CustomerService/LookupCustomer", "InteractionService/*"]},
            "mobile-backend": {"methods": ["CustomerService/GetCustomer"], "actsForCustomers": True}}}},
    }
    for name, vals in variants.items():
        docs = check_release(name, vals)
        if docs is None:
            continue
        cfg = config_of(docs)
        c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        if name == "image-digest":
            check("[image-digest] image pinned by digest", c["image"] == "customer-knowledge@sha256:" + "ab" * 32, c["image"])
        if name == "trusted-headers":
            check("[trusted-headers] mode and non-loopback allowance in the ConfigMap; no JWT settings or key volume",
                  cfg["CK__AUTH__MODE"] == "trusted_headers" and cfg["CK__AUTH__TRUSTED_HEADERS_ALLOW_NON_LOOPBACK"] == "true"
                  and not any(k.startswith("CK__AUTH__JWT__") for k in cfg)
                  and all(v["name"] != "jwt-public-keys" for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]))
        if name == "hs256-only":
            env = {e["name"]: e for e in c["env"]}
            check("[hs256-only] CK__AUTH__JWT__HS256_SECRET from the Secret, no public keys file",
                  env.get("CK__AUTH__JWT__HS256_SECRET", {}).get("valueFrom", {}).get("secretKeyRef") == {"name": "ck-jwt", "key": "secret"}
                  and "CK__AUTH__JWT__PUBLIC_KEYS_FILE" not in cfg)
        if name == "calling-systems":
            systems = next((d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-systems")), None)
            toml = (systems or {}).get("data", {}).get("systems.toml", "")
            spec = one(docs, "Deployment")["spec"]["template"]["spec"]
            env = {e["name"]: e.get("value") for e in c["env"]}
            check("[calling-systems] the systems file lists each system's methods",
                  '[auth.systems."core-banking"]' in toml
                  and 'methods = ["CustomerService/LookupCustomer", "InteractionService/*"]' in toml
                  and "acts_for_customers = true" in toml, toml)
            check("[calling-systems] server pods read it through CK_CONFIG from a read-only mount",
                  env.get("CK_CONFIG") == SYSTEMS_DIR + "/systems.toml"
                  and any(m["name"] == "systems-config" and m["mountPath"] == SYSTEMS_DIR and m.get("readOnly")
                          for m in c["volumeMounts"])
                  and any(v["name"] == "systems-config" for v in spec["volumes"]))
        if name == "read-replica":
            env = {e["name"]: e for e in c["env"]}
            check("[read-replica] CK__DATABASE__READ_URL from the database Secret's read-url key, wait in the ConfigMap",
                  env.get("CK__DATABASE__READ_URL", {}).get("valueFrom", {}).get("secretKeyRef")
                  == {"name": "customer-knowledge", "key": "read-url"}
                  and cfg.get("CK__DATABASE__READ_YOUR_WRITES_WAIT_MS") == "250", f"{env} {cfg}")
        if name == "single-replica-random-page-key":
            check("[single-replica-random-page-key] no PDB for a single replica", not by_kind(docs, "PodDisruptionBudget"))
        if name == "no-migration-job":
            check("[no-migration-job] no Job, servers migrate at start, no NetworkPolicy, existing ServiceAccount",
                  not by_kind(docs, "Job") and cfg["CK__DATABASE__MIGRATE"] == "true" and not by_kind(docs, "NetworkPolicy")
                  and not by_kind(docs, "ServiceAccount")
                  and one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa")

    section("the service's configuration loader accepts what the chart renders")
    binary = service_binary()
    if binary is None:
        print("skip - no built customer-knowledge binary (cargo build, or set CK_BIN) to check the rendered env with")
    else:
        print(f"     binary: {binary}")
        runs = [r for label, docs in RENDERED.items() for r in start_config_checks(label, docs, binary)]
        finish_config_checks(runs)

    section("checksum/config follows the settings")
    try:
        a = documents(render(None))
        b = documents(render({"log": {"level": "debug"}}))
        ca = one(a, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        cb = one(b, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        check("a settings change changes checksum/config (pods roll)", ca != cb)
    except Exception as e:  # noqa: BLE001
        check("a settings change changes checksum/config (pods roll)", False, str(e))

    section("invalid values are refused")
    # (description, values, caught by the schema (so lint fails too), text expected in the error)
    invalid = [
        ("auth.mode=basic", {"auth": {"mode": "basic"}}, True, "/auth/mode"),
        ('replicaCount="three"', {"replicaCount": "three"}, True, "/replicaCount"),
        ("unknown top-level key", {"replicas": 3}, True, "replicas"),
        ("unknown nested key image.tagg", {"image": {"tagg": "1.0"}}, True, "tagg"),
        ("log.format=text", {"log": {"format": "text"}}, True, "/log/format"),
        ("otel.endpoint without a scheme", {"otel": {"endpoint": "collector:4317"}}, True, "/otel/endpoint"),
        ("otel.sampler unknown", {"otel": {"sampler": "sometimes"}}, True, "/otel/sampler"),
        ("malformed image digest", {"image": {"digest": "md5:abc"}}, True, "/image/digest"),
        ("service.grpcPort out of range", {"service": {"grpcPort": 70000}}, True, "/service/grpcPort"),
        ("database.existingSecret empty", {"database": {"existingSecret": ""}}, True, "/database/existingSecret"),
        ("database.readUrlKey with a slash", {"database": {"readUrlKey": "a/b"}}, True, "/database/readUrlKey"),
        ("resources with a bad quantity", {"resources": {"limits": {"memory": "lots"}}}, True, "/resources/limits/memory"),
        ("networkPolicy peer with an unknown field", {"networkPolicy": {"grpcFrom": [{"podSelectr": {}}]}}, True, "podSelectr"),
        ("trusted_headers without trustedHeadersAllowNonLoopback",
         {"auth": {"mode": "trusted_headers"}}, True, "trustedHeadersAllowNonLoopback"),
        ("jwt without public keys or HS256 secret",
         {"auth": {"jwt": {"publicKeys": {"existingSecret": ""}}}}, True, "existingSecret"),
        ("jwt without issuer", {"auth": {"jwt": {"issuer": ""}}}, True, "/auth/jwt/issuer"),
        ("a calling system with a malformed method",
         {"auth": {"systems": {"core-banking": {"methods": ["GetCustomer"]}}}}, True, "/auth/systems/core-banking/methods/0"),
        ("a calling system without methods",
         {"auth": {"systems": {"core-banking": {"actsForCustomers": True}}}}, True, "methods"),
        ("several replicas without a shared page token key",
         {"api": {"pageTokenSecret": {"existingSecret": ""}}}, True, "/api/pageTokenSecret/existingSecret"),
        ("autoscaling without a shared page token key",
         {"replicaCount": 1, "autoscaling": {"enabled": True}, "api": {"pageTokenSecret": {"existingSecret": ""}}},
         True, "/api/pageTokenSecret/existingSecret"),
        ("terminationGracePeriodSeconds not above the drain time",
         {"terminationGracePeriodSeconds": 20}, False, "terminationGracePeriodSeconds"),
        ("server.tls.enabled without a Secret",
         {"server": {"tls": {"enabled": True}}}, True, "/server/tls/existingSecret"),
        ("server.tls.clientCa while TLS is off (mutual TLS silently off)",
         {"server": {"tls": {"clientCa": {"existingSecret": "ck-client-ca"}}}}, True, "/server/tls/enabled"),
        ("server.tls.clientCa.optional without a client CA",
         {"server": {"tls": {"enabled": True, "existingSecret": "ck-grpc-tls", "clientCa": {"optional": True}}}},
         True, "/server/tls/clientCa/existingSecret"),
        ("unknown key server.tls.certFile", {"server": {"tls": {"certFile": "/x"}}}, True, "certFile"),
        ("autoscaling minReplicas > maxReplicas",
         {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}, False, "minReplicas"),
    ]
    for what, vals, by_schema, expect in invalid:
        try:
            render(vals)
            check(f"render refuses {what}", False, "rendered without error")
        except (helm.HelmValuesError, helm.HelmRenderError) as e:
            check(f"render refuses {what}", expect in str(e), f"error does not mention {expect!r}: {e}")
        if by_schema:
            errs = lint_errors(vals)
            check(f"lint refuses {what}", any(expect in x for x in errs), "; ".join(errs) or "lint passed")

    print(f"\n{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a crash is a failure, never a pass
        traceback.print_exc()
        print(f"\n{passed} passed, {failed + 1} failed")
        sys.exit(1)
