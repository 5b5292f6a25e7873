"""The chart as a Gateway API and Ingress controller: which value combinations check.py renders
for it, which values it must refuse, and what each render must hold (the server's flags, the
listener ports on the pod and the Service, the classes, the RBAC), computed from the values
independently of the templates.
"""

import os
import re

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RELEASE, NAMESPACE = "lwsws-e2e", "web"
# What check.py renders with: release RELEASE in NAMESPACE gives this full name.
FULLNAME = "lwsws-e2e"
GATEWAY_CLASS = ("gateway.networking.k8s.io/v1", "GatewayClass")
CRDS_URL = "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.5.1/standard-install.yaml"
DOMAIN_PATH = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/._~%!$&'()*+,;=:-]+$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

BOTH = {"gatewayAPI": {"enabled": True}, "ingress": {"enabled": True}}
COMBINATIONS = {
    "Gateway API + Ingress, all namespaces, names of our own": {
        "gatewayAPI": {"enabled": True, "controllerName": "example.com/lwsws-gw", "gatewayClass": {"name": "edge-gw"}},
        "ingress": {"enabled": True, "controllerName": "example.com/lwsws-ing", "className": "edge"}},
    "Gateway API + Ingress, watched namespaces, default IngressClass": {
        "gatewayAPI": {"enabled": True}, "ingress": {"enabled": True, "default": True},
        "watchNamespaces": ["shop", "apps"]},
    "Ingress only, own class, release namespace watched, fixed addresses, DaemonSet": {
        "kind": "DaemonSet",
        "ingress": {"enabled": True, "createClass": False, "className": "edge", "controllerName": "example.com/edge"},
        "watchNamespaces": ["web"],
        "publishAddresses": ["203.0.113.7", "lb.example.com"],
        "ports": [{"name": "demo", "containerPort": 7681, "servicePort": 7681}],
        "listeners": [{"name": "web", "port": 80, "containerPort": 8080, "hostPort": 80},
                      {"name": "alt", "port": 8000, "containerPort": 8000}],
    },
    "Gateway API only, own class, no Service, publishService elsewhere": {
        "gatewayAPI": {"enabled": True, "controllerName": "example.com/gw", "gatewayClass": {"create": False}},
        "service": {"enabled": False},
        "publishService": "edge/front",
        "watchNamespaces": ["apps"],
    },
}
# Added to check.py's "everything on".
EVERYTHING_ON = {**BOTH, "watchNamespaces": ["apps", "web"]}

# Values the chart must refuse, each with a piece of the error that says why.
BAD_VALUES = {
    "two listeners on one Service port": ({
        "gatewayAPI": {"enabled": True}, "ports": [],
        "listeners": [{"name": "a", "port": 80, "containerPort": 8080}, {"name": "b", "port": 80, "containerPort": 8081}]},
        "listeners: port 80 is used twice"),
    "two listeners of one name": ({
        "ingress": {"enabled": True}, "ports": [],
        "listeners": [{"name": "a", "port": 80, "containerPort": 8080}, {"name": "a", "port": 81, "containerPort": 8081}]},
        "listeners: name a is used twice"),
    "two listeners on one container port": ({
        "ingress": {"enabled": True}, "ports": [],
        "listeners": [{"name": "a", "port": 80, "containerPort": 8080}, {"name": "b", "port": 81, "containerPort": 8080}]},
        "listeners: containerPort 8080 is used twice"),
    "a listener on the admin port": ({
        "ingress": {"enabled": True}, "ports": [], "listeners": [{"name": "a", "port": 80, "containerPort": 9090}]},
        "containerPort 9090 is the adminPort"),
    "a listener hostPort that is not its containerPort, with hostNetwork": ({
        "ingress": {"enabled": True}, "hostNetwork": True, "kind": "DaemonSet",
        "listeners": [{"name": "http", "port": 80, "containerPort": 8080, "hostPort": 80}]},
        "with hostNetwork the pod's ports are the node's"),
    "a vhost port on a listener's Service port": ({
        "ingress": {"enabled": True}, "ports": [{"name": "demo", "containerPort": 7681, "servicePort": 443}]},
        "ports[demo]: servicePort 443 is also the port of listeners[https]"),
    "a vhost port on a listener's container port": ({
        "gatewayAPI": {"enabled": True}, "ports": [{"name": "demo", "containerPort": 8443}]},
        "ports[demo]: containerPort 8443 is also the containerPort of listeners[https]"),
    "a listener without containerPort": ({
        "gatewayAPI": {"enabled": True}, "listeners": [{"name": "a", "port": 80}]},
        "missing property 'containerPort'"),
    "a listener key misspelt": ({
        "gatewayAPI": {"enabled": True}, "listeners": [{"name": "a", "port": 80, "containerPort": 8080, "hostport": 80}]},
        "additional properties 'hostport' not allowed"),
    "a gatewayAPI key misspelt": ({"gatewayAPI": {"enable": True}}, "additional properties 'enable' not allowed"),
    "a controller name with no path": ({"gatewayAPI": {"enabled": True, "controllerName": "lwsws"}},
                                       "/gatewayAPI/controllerName"),
    "an ingress class name in capitals": ({"ingress": {"enabled": True, "className": "Edge"}}, "/ingress/className"),
    "a watched namespace in capitals": ({"watchNamespaces": ["Apps"]}, "/watchNamespaces/0"),
    "publishService and publishAddresses both": ({
        "ingress": {"enabled": True}, "publishService": "a/b", "publishAddresses": ["192.0.2.1"]},
        "publishService and publishAddresses: set one of the two"),
    "publishService with two slashes": ({"publishService": "a/b/c"}, "/publishService"),
    "a publish address with a comma": ({"publishAddresses": ["192.0.2.1,192.0.2.2"]}, "/publishAddresses/0"),
}

READ = ("get", "list", "watch")
STATUS = ("patch", "update")


def defaults():
    with open(os.path.join(REPO, "charts", "lwsws", "values.yaml")) as f:
        return yaml.safe_load(f)


def merged(base, over):
    """Helm's merge of user values over the defaults: maps merge, anything else replaces, and
    null deletes."""
    out = dict(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def by_kind(docs, kind):
    return [d for _, d in docs if d.get("kind") == kind]


def flag(args, name):
    """None when absent, True for a flag without a value, else the value that follows it."""
    if name not in args:
        return None
    i = args.index(name)
    nxt = args[i + 1] if i + 1 < len(args) else None
    return True if nxt is None or nxt.startswith("--") else nxt


def flatten(rules):
    """Rules as sorted (group, resource, verbs, resourceNames) tuples."""
    return sorted((g, r, tuple(sorted(rule["verbs"])), tuple(rule.get("resourceNames", [])))
                  for rule in rules for g in rule["apiGroups"] for r in rule["resources"])


def expected_rules(v):
    gw, ing = v["gatewayAPI"]["enabled"], v["ingress"]["enabled"]
    cluster = [("", "namespaces", READ)]
    namespaced = [("", "services", READ), ("discovery.k8s.io", "endpointslices", READ), ("", "secrets", READ)]
    if gw:
        g = "gateway.networking.k8s.io"
        cluster += [(g, "gatewayclasses", READ), (g, "gatewayclasses/status", STATUS)]
        namespaced += [(g, r, READ) for r in ("gateways", "httproutes", "referencegrants")]
        namespaced += [(g, "gateways/status", STATUS), (g, "httproutes/status", STATUS)]
    if ing:
        n = "networking.k8s.io"
        cluster += [(n, "ingressclasses", READ)]
        namespaced += [(n, "ingresses", READ), (n, "ingresses/status", STATUS)]
    return sorted(r + ((),) for r in cluster), sorted(r + ((),) for r in namespaced)


def publish_service(v):
    if v["publishAddresses"]:
        return None
    p = v["publishService"]
    if p:
        return p if "/" in p else f"{NAMESPACE}/{p}"
    return f"{NAMESPACE}/{FULLNAME}" if v["service"]["enabled"] else None


def bound_to_pod(binding, role, sa):
    return (binding["roleRef"]["kind"] == role["kind"] and binding["roleRef"]["name"] == role["metadata"]["name"]
            and binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
            and binding["metadata"].get("namespace") == role["metadata"].get("namespace"))


def check_classes(c, label, v, docs):
    gw, ing = v["gatewayAPI"], v["ingress"]
    classes = by_kind(docs, "GatewayClass")
    if gw["enabled"] and gw["gatewayClass"]["create"]:
        gc = classes[0] if len(classes) == 1 else {}
        spec = gc.get("spec", {})
        c.check(f"[{label}] GatewayClass {gw['gatewayClass']['name']}, gateway.networking.k8s.io/v1, "
                f"controllerName {gw['controllerName']}",
                (gc.get("apiVersion"), gc.get("kind")) == GATEWAY_CLASS
                and set(gc) == {"apiVersion", "kind", "metadata", "spec"}
                and gc["metadata"]["name"] == gw["gatewayClass"]["name"] and "namespace" not in gc["metadata"]
                and SUBDOMAIN.match(gc["metadata"]["name"]) is not None
                and set(spec) <= {"controllerName", "description"}
                and spec.get("controllerName") == gw["controllerName"]
                and DOMAIN_PATH.match(spec["controllerName"]) is not None and len(spec["controllerName"]) <= 253
                and len(spec.get("description", "")) <= 64, str(gc))
    else:
        c.check(f"[{label}] no GatewayClass unless asked", not classes)
    classes = by_kind(docs, "IngressClass")
    if ing["enabled"] and ing["createClass"]:
        ic = classes[0] if len(classes) == 1 else {"metadata": {}}
        annotations = ic["metadata"].get("annotations") or {}
        want = {"ingressclass.kubernetes.io/is-default-class": "true"} if ing["default"] else {}
        c.check(f"[{label}] IngressClass {ing['className']}, controller {ing['controllerName']}"
                f"{', the default class' if ing['default'] else ''}",
                ic["metadata"].get("name") == ing["className"] and "namespace" not in ic["metadata"]
                and ic.get("spec") == {"controller": ing["controllerName"]} and annotations == want, str(ic))
    else:
        c.check(f"[{label}] no IngressClass unless asked", not classes)


def check_args(c, label, v, args):
    gw, ing = v["gatewayAPI"], v["ingress"]
    controller = gw["enabled"] or ing["enabled"]
    listeners = v["listeners"] if controller else []
    publish = publish_service(v) if controller else None
    watch = ",".join(sorted(v["watchNamespaces"])) if controller and v["watchNamespaces"] else None
    want = {
        "--gateway-api": True if gw["enabled"] else None,
        "--gateway-controller-name": gw["controllerName"] if gw["enabled"] else None,
        "--ingress": True if ing["enabled"] else None,
        "--ingress-class": ing["className"] if ing["enabled"] else None,
        "--ingress-controller-name": ing["controllerName"] if ing["enabled"] else None,
        "--watch-namespaces": watch,
        "--publish-service": publish,
        "--publish-address": ",".join(v["publishAddresses"]) if controller and v["publishAddresses"] else None,
        "--listener-port-map": ",".join(f"{x['port']}={x['containerPort']}" for x in listeners) or None,
    }
    got = {name: flag(args, name) for name in want}
    shown = " ".join(f"{k} {val}" if val is not True else k for k, val in want.items() if val is not None)
    c.check(f"[{label}] controller args: {shown or 'none'}",
            got == want and all(args.count(name) <= 1 for name in want), f"{got} vs {want}")


def check_ports(c, label, v, docs, ctr):
    controller = v["gatewayAPI"]["enabled"] or v["ingress"]["enabled"]
    listeners = v["listeners"] if controller else []
    names = {x["name"] for x in listeners}
    kept = [p for p in v["ports"] if p["name"] not in names]
    want_ctr = sorted([(x["name"], x["containerPort"], "TCP", x.get("hostPort")) for x in listeners]
                      + [(p["name"], p["containerPort"], p.get("protocol", "TCP"), p.get("hostPort")) for p in kept]
                      + [("admin", v["adminPort"], "TCP", None)])
    got_ctr = sorted((p["name"], p["containerPort"], p["protocol"], p.get("hostPort")) for p in ctr["ports"])
    c.check(f"[{label}] container ports: listeners {[x['name'] for x in listeners]}, vhost ports "
            f"{[p['name'] for p in kept]}, admin", got_ctr == want_ctr, f"{got_ctr} vs {want_ctr}")
    services = [s for s in by_kind(docs, "Service")
                if s["metadata"]["labels"].get("app.kubernetes.io/component") != "admin"]
    if not v["service"]["enabled"]:
        c.check(f"[{label}] no Service but the admin one", not services)
        return
    want_svc = sorted([(x["name"], x["port"], x["containerPort"]) for x in listeners]
                      + [(p["name"], p["servicePort"], p["name"]) for p in kept if p.get("servicePort")])
    got_svc = sorted((p["name"], p["port"], p["targetPort"]) for p in services[0]["spec"]["ports"] or []) if services else []
    c.check(f"[{label}] Service ports: each listener's port to its containerPort, each vhost port kept",
            len(services) == 1 and got_svc == want_svc, f"{got_svc} vs {want_svc}")


def check_rbac(c, label, v, docs, sa):
    """The controllers' own RBAC objects (those not named like the release's Role)."""
    gw, ing = v["gatewayAPI"]["enabled"], v["ingress"]["enabled"]
    roles = [d for d in by_kind(docs, "Role") if d["metadata"]["name"] != FULLNAME]
    bindings = [d for d in by_kind(docs, "RoleBinding") if d["metadata"]["name"] != FULLNAME]
    cluster_roles, cluster_bindings = by_kind(docs, "ClusterRole"), by_kind(docs, "ClusterRoleBinding")
    if not (gw or ing):
        c.check(f"[{label}] no controller RBAC without a controller",
                not roles and not bindings and not cluster_roles and not cluster_bindings)
        return
    cluster, namespaced = expected_rules(v)
    everything = [r for d in roles + cluster_roles for r in flatten(d["rules"])]
    c.check(f"[{label}] controller RBAC: no wildcard, writes only update/patch on */status, secrets read-only",
            all("*" not in (g, r) and "*" not in verbs for g, r, verbs, _ in everything)
            and all(set(verbs) <= set(READ) or (r.endswith("/status") and verbs == STATUS)
                    for g, r, verbs, _ in everything)
            and all(verbs == READ for g, r, verbs, _ in everything if r == "secrets"), str(everything))
    watch = sorted(v["watchNamespaces"])
    publish = publish_service(v)
    if not watch:
        cr = cluster_roles[0] if len(cluster_roles) == 1 else {"rules": []}
        c.check(f"[{label}] all namespaces: one ClusterRole with exactly the rules of the controllers on",
                len(cluster_roles) == 1 and flatten(cr["rules"]) == sorted(cluster + namespaced),
                str(flatten(cr["rules"])))
        c.check(f"[{label}] a ClusterRoleBinding gives it to the pod's ServiceAccount, and no controller Role",
                len(cluster_bindings) == 1 and bound_to_pod(cluster_bindings[0], cr, sa)
                and not roles and not bindings)
        return
    cr = cluster_roles[0] if len(cluster_roles) == 1 else {"rules": []}
    c.check(f"[{label}] watched namespaces: one ClusterRole with only the cluster-scoped rules",
            len(cluster_roles) == 1 and flatten(cr["rules"]) == cluster, str(flatten(cr["rules"])))
    c.check(f"[{label}] a ClusterRoleBinding gives it to the pod's ServiceAccount",
            len(cluster_bindings) == 1 and bound_to_pod(cluster_bindings[0], cr, sa))
    per_ns = [r for r in roles if not r["metadata"]["name"].endswith("-publish")]
    c.check(f"[{label}] a Role in each of {watch} with exactly the namespaced rules",
            sorted(r["metadata"]["namespace"] for r in per_ns) == watch
            and all(flatten(r["rules"]) == namespaced for r in per_ns),
            str([(r["metadata"]["namespace"], flatten(r["rules"])) for r in per_ns]))
    c.check(f"[{label}] a RoleBinding beside each gives it to the pod's ServiceAccount",
            all(sum(bound_to_pod(b, r, sa) for b in bindings) == 1 for r in roles)
            and len(bindings) == len(roles))
    pub = [r for r in roles if r["metadata"]["name"].endswith("-publish")]
    ns, _, name = (publish or "/").partition("/")
    if publish and ns not in watch:
        c.check(f"[{label}] a Role in {ns} reads only the publish Service {name}",
                len(pub) == 1 and pub[0]["metadata"]["namespace"] == ns
                and flatten(pub[0]["rules"]) == [("", "services", READ, (name,))],
                str(pub and flatten(pub[0]["rules"])))
    else:
        c.check(f"[{label}] no publish Role (no publish Service, or its namespace is watched)", not pub)


def check_notes(c, label, v, notes):
    gw, ing = v["gatewayAPI"]["enabled"], v["ingress"]["enabled"]
    if not (gw or ing):
        c.check(f"[{label}] NOTES: nothing about controllers", "controller" not in notes, notes)
        return
    listeners = [f"{x['name']}: {x['port']} -> {x['containerPort']}" for x in v["listeners"]]
    c.check(f"[{label}] NOTES: the listener port map{' and how to install the Gateway API CRDs' if gw else ''}",
            all(x in notes for x in listeners)
            and ((f"kubectl apply --server-side -f {CRDS_URL}" in notes) == gw)
            and (f"spec.ingressClassName {v['ingress']['className']}" in notes) == ing, notes)


def check(c, label, values, docs, notes, ctr, pod):
    """Everything above, for one rendered combination (values as given to check.py)."""
    v = merged(defaults(), values)
    check_args(c, label, v, ctr["args"])
    check_ports(c, label, v, docs, ctr)
    check_classes(c, label, v, docs)
    check_rbac(c, label, v, docs, pod["serviceAccountName"])
    check_notes(c, label, v, notes)


def quickstart_blocks():
    """The yaml code blocks of docs/gateway-and-ingress-quickstart.md, each a list of objects."""
    with open(os.path.join(REPO, "docs", "gateway-and-ingress-quickstart.md")) as f:
        blocks = f.read().split("```")
    return [[d for d in yaml.safe_load_all(b[len("yaml"):]) if d] for b in blocks[1::2] if b.startswith("yaml")]


def check_quickstart(c, render, validate):
    """The quickstart's values render, its Kubernetes objects are valid, and its Gateway API
    objects agree with them and with the chart (no CRD schemas here to validate those)."""
    blocks = quickstart_blocks()
    values = next((b[0] for b in blocks if b and "gatewayAPI" in b[0]), None)
    objects = {(d.get("kind"), d.get("metadata", {}).get("name")): d for b in blocks for d in b if "kind" in d}
    c.check("quickstart: has the values, echo, Gateway, HTTPRoute and Ingress",
            values is not None and {("Deployment", "echo"), ("Service", "echo"), ("Gateway", "web"),
                                    ("HTTPRoute", "echo"), ("Ingress", "echo")} <= set(objects), str(list(objects)))
    if values is None:
        return
    try:
        docs = render(values)
        c.check("quickstart: its values render", True)
    except Exception as e:  # whatever the render raises is the finding
        c.check("quickstart: its values render", False, str(e))
        return
    errors = [f"{k}: {validate(d)}" for k, d in objects.items()
              if not d["apiVersion"].startswith("gateway.networking.k8s.io/") and validate(d)]
    c.check("quickstart: kubernetes-validate --strict on its Namespace, Deployment, Service and Ingress",
            not errors, "; ".join(errors))
    v = merged(defaults(), values)
    gateway, route = objects.get(("Gateway", "web"), {}), objects.get(("HTTPRoute", "echo"), {})
    ingress, service = objects.get(("Ingress", "echo"), {}), objects.get(("Service", "echo"), {})
    svc_ports = {p["port"] for p in service.get("spec", {}).get("ports", [])}
    classes = {d["metadata"]["name"] for _, d in docs if d.get("kind") in ("GatewayClass", "IngressClass")}
    listener_ports = {x["port"] for x in v["listeners"]}
    c.check("quickstart: the Gateway's class is the chart's, and its listener ports are all in `listeners`",
            gateway.get("spec", {}).get("gatewayClassName") == v["gatewayAPI"]["gatewayClass"]["name"]
            and gateway["spec"]["gatewayClassName"] in classes
            and {x["port"] for x in gateway["spec"]["listeners"]} <= listener_ports)
    refs = [b for r in route.get("spec", {}).get("rules", []) for b in r.get("backendRefs", [])]
    c.check("quickstart: the HTTPRoute's parent is the Gateway and its backend the echo Service's port",
            [p["name"] for p in route.get("spec", {}).get("parentRefs", [])] == ["web"]
            and refs and all(b["name"] == "echo" and b["port"] in svc_ports for b in refs))
    backends = [p["backend"]["service"] for r in ingress.get("spec", {}).get("rules", []) for p in r["http"]["paths"]]
    c.check("quickstart: the Ingress has the chart's class and points at the echo Service's port",
            ingress.get("spec", {}).get("ingressClassName") == v["ingress"]["className"]
            and ingress["spec"]["ingressClassName"] in classes
            and backends and all(b["name"] == "echo" and b["port"]["number"] in svc_ports for b in backends))
