"""The chart's side of rolling updates: which value combinations check.py renders for it, which
values it must refuse, and what each render must hold. The stop's numbers must agree: lwsws's
--shutdown-delay-secs and --grace-secs from `shutdown`, and a terminationGracePeriodSeconds
that covers both (computed with a 5 s margin unless set). Also: readiness on /readyz, the
default spread over nodes, the optional HorizontalPodAutoscaler and the PodDisruptionBudget.
Expectations are computed from the values, independently of the templates.
"""

import controllers

MARGIN = 5
COMBINATIONS = {
    "longer stop": {"shutdown": {"delaySeconds": 15, "graceSeconds": 45}},
    "terminationGracePeriodSeconds set": {"terminationGracePeriodSeconds": 120},
    "no shutdown delay": {"shutdown": {"delaySeconds": 0}},
    "autoscaling": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8,
                                    "targetCPUUtilizationPercentage": 60}},
    "own spread constraints": {"topologySpreadConstraints": [
        {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "lwsws"}}}]},
    "no spread constraints": {"topologySpreadConstraints": []},
}
BAD_VALUES = {
    "terminationGracePeriodSeconds below delay + grace": (
        {"terminationGracePeriodSeconds": 10}, "shorter than shutdown.delaySeconds + shutdown.graceSeconds"),
    "autoscaling a DaemonSet": ({"kind": "DaemonSet", "autoscaling": {"enabled": True}}, "needs kind: Deployment"),
    "a misspelt shutdown key": {"shutdown": {"delay": 5}},
}


def flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def check(c, label, values, docs, workload):
    v = controllers.merged(controllers.defaults(), values)
    pod = workload["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    args = ctr["args"]
    delay, grace = v["shutdown"]["delaySeconds"], v["shutdown"]["graceSeconds"]
    c.check(f"[{label}] args --shutdown-delay-secs {delay} --grace-secs {grace}, once each",
            flag(args, "--shutdown-delay-secs") == str(delay) and flag(args, "--grace-secs") == str(grace)
            and args.count("--grace-secs") == 1 and args.count("--shutdown-delay-secs") == 1, str(args))
    set_period = v.get("terminationGracePeriodSeconds")
    want = set_period if set_period is not None else delay + grace + MARGIN
    got = pod.get("terminationGracePeriodSeconds")
    c.check(f"[{label}] terminationGracePeriodSeconds {want} covers delay {delay} + grace {grace}",
            got == want and got >= delay + grace, f"{got}")
    # The delay is the server's: no preStop hook to add to it or to need a shell in the image.
    c.check(f"[{label}] no preStop hook", "lifecycle" not in ctr, str(ctr.get("lifecycle")))
    probe = ctr["readinessProbe"]["httpGet"]
    c.check(f"[{label}] readiness probe GET /readyz on the admin port",
            probe["path"] == "/readyz" and probe["port"] == "admin", str(probe))

    deployment = workload["kind"] == "Deployment"
    spread = pod.get("topologySpreadConstraints")
    if v.get("topologySpreadConstraints") is not None:
        want_spread = v["topologySpreadConstraints"] or None
    elif deployment:
        selector = workload["spec"]["selector"]["matchLabels"]
        want_spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": selector}}]
    else:
        want_spread = None
    c.check(f"[{label}] topologySpreadConstraints {'as given' if v.get('topologySpreadConstraints') is not None else 'default'}",
            spread == want_spread, f"{spread} vs {want_spread}")

    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    auto = v["autoscaling"]
    if auto["enabled"]:
        h = hpas[0]["spec"] if hpas else {}
        target = h.get("metrics", [{}])[0].get("resource", {})
        c.check(f"[{label}] HorizontalPodAutoscaler {auto['minReplicas']}-{auto['maxReplicas']} at "
                f"{auto['targetCPUUtilizationPercentage']}% CPU owns the Deployment's replicas",
                len(hpas) == 1 and hpas[0]["apiVersion"] == "autoscaling/v2"
                and h["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": workload["metadata"]["name"]}
                and (h["minReplicas"], h["maxReplicas"]) == (auto["minReplicas"], auto["maxReplicas"])
                and target.get("name") == "cpu"
                and target.get("target", {}).get("averageUtilization") == auto["targetCPUUtilizationPercentage"]
                and "replicas" not in workload["spec"], str(hpas))
    else:
        c.check(f"[{label}] no HorizontalPodAutoscaler unless asked; replicas set",
                not hpas and (not deployment or workload["spec"].get("replicas") == v["replicaCount"]))

    pdbs = by_kind(docs, "PodDisruptionBudget")
    if v["podDisruptionBudget"]["enabled"]:
        c.check(f"[{label}] PodDisruptionBudget selects the pods",
                len(pdbs) == 1 and pdbs[0]["spec"]["selector"]["matchLabels"]
                == workload["spec"]["selector"]["matchLabels"], str(pdbs))
    else:
        c.check(f"[{label}] no PodDisruptionBudget when disabled", not pdbs)


def by_kind(docs, kind):
    return [d for _, d in docs if d.get("kind") == kind]
