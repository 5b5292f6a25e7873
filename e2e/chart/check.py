"""Lints and renders charts/lwsws offline with the Helm SDK (helm-python-sdk), validates every
rendered manifest and the CRD with kubernetes-validate, and checks what the chart promises:
the config directory is never mounted with subPath, the pod is locked down, RBAC exists only in
Kubernetes mode and grants only what lwsws uses, and the default config passes `lwsws --check`.
controllers.py checks the chart as a Gateway API and Ingress controller; rolling.py its stop
(delay, grace, terminationGracePeriodSeconds), spread, autoscaler and disruption budget.

Run by e2e/chart/check.sh, which installs the two packages. Prints one line per check and ends
with "N passed, M failed"; exits 1 on any failure.
"""

import os
import subprocess
import sys
import tempfile

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

import controllers
import rolling

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(REPO, "charts", "lwsws")
CRD_FILE = "lwsws.io_lwswsconfigs.yaml"
# The schemas kubernetes-validate checks against: the newest it has and the chart's oldest.
KUBE_VERSIONS = [kubernetes_validate.utils.latest_version(), "1.25"]
# Kinds outside the Kubernetes API: the Prometheus Operator's, our own custom resources, and the
# Gateway API's GatewayClass (controllers.py checks that one by hand).
NOT_IN_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("lwsws.io/v1alpha1", "LwswsConfig"),
                  controllers.GATEWAY_CLASS}

EXISTING_CM = {"config": {"existingConfigMap": "my-lwsws", "existingConfigMapConfD": ["b-site", "a-site"]}}
KUBERNETES = {"kubernetes": {"enabled": True}}
COMBINATIONS = {
    "defaults": {},
    "DaemonSet with hostPort": {"kind": "DaemonSet", "ports": [{"name": "http", "containerPort": 8080, "hostPort": 80}]},
    "existing ConfigMap": EXISTING_CM,
    "Kubernetes mode": KUBERNETES,
    "ServiceMonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "everything on": {
        **EXISTING_CM,
        **KUBERNETES,
        "kind": "DaemonSet",
        "hostNetwork": True,
        "metrics": {"serviceMonitor": {"enabled": True}},
        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
        "podDisruptionBudget": {"minAvailable": 1},
        "extraVolumes": [{"name": "www", "configMap": {"name": "www"}}],
        "extraVolumeMounts": [{"name": "www", "mountPath": "/srv/www", "readOnly": True}],
        "extraArgs": ["--drain-secs", "30"],
        **controllers.EVERYTHING_ON,
    },
    "minimal": {"service": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
                "serviceAccount": {"create": False}, "metrics": {"podAnnotations": False},
                "config": {"confD": {"localhost": None}}},
    **controllers.COMBINATIONS,
    **rolling.COMBINATIONS,
}
BAD_VALUES = {
    "kind StatefulSet": {"kind": "StatefulSet"},
    "a conf.d file named conf": {"config": {"confD": {"conf": "{}"}}},
    "a misspelt key": {"replicas": 3},
    "a conf.d key with a slash": {"config": {"confD": {"a/b": "{}"}}},
    "logFormat xml": {"logFormat": "xml"},
    **controllers.BAD_VALUES,
    **rolling.BAD_VALUES,
}
LEAST_PRIVILEGE = sorted([
    ("lwsws.io", "lwswsconfigs", ("get", "list", "watch")),
    ("lwsws.io", "lwswsconfigs/status", ("get", "patch", "update")),
    ("", "secrets", ("create", "delete", "get", "list", "patch", "watch")),
    ("coordination.k8s.io", "leases", ("create", "get", "update")),
])


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""))
        return ok


def render_with_notes(values):
    """The rendered manifests as (path, object) pairs, and NOTES.txt."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values=values, name=controllers.RELEASE, namespace=controllers.NAMESPACE,
                           is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if not path.endswith(".yaml"):
            continue
        docs += [(path, d) for d in yaml.safe_load_all(text) if d]
    return docs, out.get("lwsws/templates/NOTES.txt", "")


def render(values):
    return render_with_notes(values)[0]


def find_key(node, key):
    if isinstance(node, dict):
        return key in node or any(find_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(find_key(v, key) for v in node)
    return False


def validate(doc):
    """Returns an error string, or "" when the manifest is valid for every KUBE_VERSIONS."""
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            return f"{version}: {'.'.join(str(p) for p in e.path)}: {e.message}"
        except kubernetes_validate.SchemaNotFoundError as e:
            return e.message
    return ""


def by_kind(docs, kind):
    return [d for _, d in docs if d.get("kind") == kind]


def workload(docs):
    return next(d for _, d in docs if d.get("kind") in ("Deployment", "DaemonSet"))


def check_lint(c):
    for strict in (False, True):
        for label, values in [("defaults", None), ("everything on", COMBINATIONS["everything on"])]:
            report = helm.lint(CHART, values, strict=strict)
            worst = max((m["severity"] for m in report["messages"]), default=0)
            limit = 1 if strict else 2
            problems = [m for m in report["messages"] if m["severity"] > limit] + report["errors"]
            c.check(f"helm lint{' --strict' if strict else ''} ({label})",
                    not problems and worst <= limit, str(problems))


def check_combination(c, label, values):
    try:
        docs, notes = render_with_notes(values)
    except helm.HelmError as e:
        c.check(f"[{label}] renders", False, str(e))
        return
    c.check(f"[{label}] renders", bool(docs))
    errors = []
    for path, doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in NOT_IN_SCHEMAS:
            continue
        err = validate(doc)
        if err:
            errors.append(f"{path} {doc.get('kind')}: {err}")
    kinds = sorted({d["kind"] for _, d in docs})
    c.check(f"[{label}] kubernetes-validate --strict on {', '.join(kinds)}", not errors, "; ".join(errors))
    c.check(f"[{label}] no subPath anywhere", not any(find_key(d, "subPath") for _, d in docs))

    w = workload(docs)
    pod = w["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    want_kind = (values or {}).get("kind", "Deployment")
    c.check(f"[{label}] workload is a {want_kind}", w["kind"] == want_kind, w["kind"])

    mounts = [m for m in ctr["volumeMounts"] if m["mountPath"] == "/etc/lwsws"]
    vol = next((v for v in pod["volumes"] if mounts and v["name"] == mounts[0]["name"]), None)
    ok = bool(mounts) and vol is not None and "projected" in vol
    items = vol["projected"]["sources"][0]["configMap"]["items"] if ok else []
    paths = [i["path"] for i in items]
    c.check(f"[{label}] /etc/lwsws is a directory mount with conf and conf.d/*",
            ok and paths[:1] == ["conf"] and all(p.startswith("conf.d/") for p in paths[1:]), str(paths))

    cms = by_kind(docs, "ConfigMap")
    existing = (values or {}).get("config", {}).get("existingConfigMap")
    if existing:
        source = vol["projected"]["sources"][0]["configMap"] if ok else {}
        c.check(f"[{label}] uses the existing ConfigMap, builds none",
                not cms and source.get("name") == existing
                and paths == ["conf", "conf.d/a-site", "conf.d/b-site"], f"{source} {len(cms)}")
    elif (values or {}).get("config", {}).get("confD", {}).get("localhost", "") is None:
        c.check(f"[{label}] a conf.d entry set to null is dropped",
                len(cms) == 1 and list(cms[0]["data"]) == ["conf"] and paths == ["conf"], str(paths))
    else:
        keys = sorted(cms[0]["data"]) if cms else []
        c.check(f"[{label}] the built ConfigMap has every key the volume projects",
                len(cms) == 1 and sorted(i["key"] for i in items) == keys, f"{keys} vs {paths}")

    sc, psc = ctr.get("securityContext", {}), pod.get("securityContext", {})
    locked = (sc.get("runAsNonRoot") and sc.get("runAsUser") == 65532 and sc.get("readOnlyRootFilesystem")
              and sc.get("allowPrivilegeEscalation") is False
              and sc.get("capabilities") == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
              and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
              and psc.get("runAsNonRoot") and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
    c.check(f"[{label}] securityContext: non-root 65532, read-only root, no escalation, caps ALL-NET_BIND_SERVICE",
            bool(locked), str(sc))
    probes = (ctr["livenessProbe"]["httpGet"]["path"], ctr["readinessProbe"]["httpGet"]["path"])
    c.check(f"[{label}] probes /healthz and /readyz on the admin port",
            probes == ("/healthz", "/readyz") and ctr["livenessProbe"]["httpGet"]["port"] == "admin")
    env = {e["name"]: e for e in ctr.get("env", [])}
    c.check(f"[{label}] POD_NAME from the downward API (the replica's name in Leases)",
            env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name")
    c.check(f"[{label}] the status Lease is the release's own in Kubernetes mode",
            (env.get("LWSWS_STATUS_LEASE", {}).get("value") == f"{controllers.FULLNAME}-status")
            == ("--kubernetes" in ctr["args"]), str(env.get("LWSWS_STATUS_LEASE")))
    c.check(f"[{label}] POD_NAMESPACE from the downward API",
            env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace")

    controller = any((values or {}).get(k, {}).get("enabled") for k in ("gatewayAPI", "ingress"))
    k8s = controller or bool((values or {}).get("kubernetes", {}).get("enabled"))
    args = ctr["args"]
    c.check(f"[{label}] args -c /etc/lwsws --admin-addr 0.0.0.0:9090{' --kubernetes' if k8s else ''}",
            args[:4] == ["-c", "/etc/lwsws", "--admin-addr", "0.0.0.0:9090"] and ("--kubernetes" in args) == k8s,
            str(args))
    # The release's own Role (the controllers' RBAC is checked by controllers.py).
    roles = [d for d in by_kind(docs, "Role") if d["metadata"]["name"] == controllers.FULLNAME]
    if k8s:
        rules = sorted((g, r, tuple(sorted(rule["verbs"])))
                       for rule in (roles[0]["rules"] if roles else [])
                       for g in rule["apiGroups"] for r in rule["resources"])
        binding = [d for d in by_kind(docs, "RoleBinding") if d["metadata"]["name"] == controllers.FULLNAME]
        c.check(f"[{label}] Role grants exactly lwswsconfigs r/o, their status, secrets (read; ACME writes), leases",
                len(roles) == 1 and roles[0]["metadata"]["namespace"] == controllers.NAMESPACE
                and rules == LEAST_PRIVILEGE and (controller or not by_kind(docs, "ClusterRole")), str(rules))
        c.check(f"[{label}] RoleBinding binds the Role to the pod's ServiceAccount",
                len(binding) == 1 and binding[0]["subjects"][0]["name"] == pod["serviceAccountName"]
                and binding[0]["roleRef"]["name"] == roles[0]["metadata"]["name"])
        c.check(f"[{label}] the pod gets an API token", pod.get("automountServiceAccountToken") is True)
    else:
        c.check(f"[{label}] no RBAC and no API token without Kubernetes mode",
                not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding") and not by_kind(docs, "ClusterRole")
                and pod.get("automountServiceAccountToken") is False)
    controllers.check(c, label, values, docs, notes, ctr, pod)
    rolling.check(c, label, values, docs, w)

    want_sm = bool((values or {}).get("metrics", {}).get("serviceMonitor", {}).get("enabled"))
    sms = by_kind(docs, "ServiceMonitor")
    admin = [s for s in by_kind(docs, "Service") if s["metadata"]["labels"].get("app.kubernetes.io/component") == "admin"]
    if want_sm:
        sel = sms[0]["spec"]["selector"]["matchLabels"] if sms else {}
        c.check(f"[{label}] ServiceMonitor selects the admin Service's port",
                len(sms) == 1 and len(admin) == 1
                and all(admin[0]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                and sms[0]["spec"]["endpoints"][0]["port"] == admin[0]["spec"]["ports"][0]["name"])
    else:
        c.check(f"[{label}] no ServiceMonitor unless asked", not sms)
    annotations = w["spec"]["template"]["metadata"].get("annotations", {})
    want_ann = (values or {}).get("metrics", {}).get("podAnnotations", True)
    c.check(f"[{label}] prometheus.io annotations {'on' if want_ann else 'off'}",
            (annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == "9090"
             and annotations.get("prometheus.io/path") == "/metrics") == want_ann, str(annotations))


def check_validator_bites(c):
    """A control: kubernetes-validate must reject a broken manifest, or its passes mean nothing."""
    broken = yaml.safe_load("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
                            "spec: {selector: {}, template: {spec: {containers: [{name: x, imagePort: 1}]}}}")
    c.check("control: kubernetes-validate rejects an unknown container field", bool(validate(broken)))


def check_bad_values(c):
    """Each must fail to render; where a reason is given, the error must say it."""
    for label, values in BAD_VALUES.items():
        values, reason = values if isinstance(values, tuple) else (values, "")
        try:
            render(values)
            c.check(f"values refused: {label}", False, "rendered")
        except helm.HelmError as e:
            c.check(f"values refused: {label}", reason in str(e), f"the error does not say {reason!r}: {e}")


def check_crds(c):
    with helm.Chart.load(CHART) as chart:
        crds = chart.crds
    names = [x["filename"] for x in crds]
    c.check("the chart carries the CRD", len(names) == 1 and names[0].endswith(f"crds/{CRD_FILE}"), str(names))
    with open(os.path.join(REPO, "crds", CRD_FILE)) as a, open(os.path.join(CHART, "crds", CRD_FILE)) as b:
        c.check("crds/ and charts/lwsws/crds/ hold the same CRD", a.read() == b.read())
    for crd in crds:
        doc = yaml.safe_load(crd["data"])
        err = validate(doc)
        c.check(f"kubernetes-validate --strict {doc.get('kind')} {doc['metadata']['name']}",
                doc.get("apiVersion") == "apiextensions.k8s.io/v1" and doc.get("kind") == "CustomResourceDefinition"
                and not err, err)
        spec = doc["spec"]
        c.check("CRD is lwsws.io/v1alpha1 LwswsConfig, plural lwswsconfigs, short name lwsc, namespaced",
                spec["group"] == "lwsws.io" and spec["names"]["kind"] == "LwswsConfig"
                and spec["names"]["plural"] == "lwswsconfigs" and "lwsc" in spec["names"].get("shortNames", [])
                and spec["scope"] == "Namespaced" and [v["name"] for v in spec["versions"]] == ["v1alpha1"])
        version = spec["versions"][0]
        columns = {col["name"] for col in version.get("additionalPrinterColumns", [])}
        c.check("CRD has the status subresource and Accepted/Programmed columns",
                "status" in version.get("subresources", {}) and {"Accepted", "Programmed"} <= columns, str(columns))


def readme_examples():
    """The LwswsConfig examples in README.md's yaml code blocks."""
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = f.read().split("```")
    docs = []
    for block in blocks[1::2]:
        if block.startswith("yaml") and "kind: LwswsConfig" in block:
            docs += [d for d in yaml.safe_load_all(block[len("yaml"):]) if d]
    return docs


def check_crd_schema(c):
    """The README's LwswsConfig examples fit the CRD's schema, and a malformed one does not."""
    with open(os.path.join(CHART, "crds", CRD_FILE)) as f:
        schema = yaml.safe_load(f)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    examples = readme_examples()
    c.check("README.md has a LwswsConfig example", bool(examples))
    for doc in examples:
        try:
            jsonschema.validate(doc, schema)
            c.check(f"README example {doc['metadata']['name']} fits the CRD schema", True)
        except jsonschema.ValidationError as e:
            c.check(f"README example {doc['metadata']['name']} fits the CRD schema", False, e.message)
    bad = {"apiVersion": "lwsws.io/v1alpha1", "kind": "LwswsConfig", "metadata": {"name": "bad"},
           "spec": {"vhosts": ["not an object"]}}
    try:
        jsonschema.validate(bad, schema)
        c.check("the CRD schema refuses a vhost that is not an object", False)
    except jsonschema.ValidationError:
        c.check("the CRD schema refuses a vhost that is not an object", True)


def check_default_config(c, binary):
    """The default values' ConfigMap, laid out as the volume does, passes `lwsws --check`."""
    if not (binary and os.access(binary, os.X_OK)):
        c.check("default ConfigMap passes lwsws --check", False, f"no lwsws binary at {binary!r}")
        return
    cm = by_kind(render({}), "ConfigMap")[0]
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, "conf.d"))
        for key, text in cm["data"].items():
            with open(os.path.join(tmp, "conf" if key == "conf" else os.path.join("conf.d", key)), "w") as f:
                f.write(text)
        ddir = os.path.join(REPO, "conf", "share")
        run = subprocess.run([binary, "--check", "-c", tmp, "--data-dir", ddir], capture_output=True, text=True)
        c.check("default ConfigMap passes lwsws --check", run.returncode == 0, run.stdout + run.stderr)


def main():
    c = Checks()
    print(f"helm SDK {helm.helm_sdk_version()}, kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    check_lint(c)
    for label, values in COMBINATIONS.items():
        check_combination(c, label, values)
    check_validator_bites(c)
    check_bad_values(c)
    check_crds(c)
    check_crd_schema(c)
    controllers.check_quickstart(c, render, validate)
    check_default_config(c, sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
