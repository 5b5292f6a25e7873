#!/usr/bin/env bash
# The whole Kubernetes path on a throwaway kind cluster: build the image, load it into the
# cluster, `helm install` the chart in Kubernetes mode with a ConfigMap-driven vhost, add a vhost
# with a LwswsConfig resource, reach both through a port-forward, read the resource's status,
# scrape /metrics, edit the ConfigMap and wait for the change to be served, refuse a bad
# resource while the good config keeps serving. Deletes the cluster on exit.
#
# Needs docker, kind, kubectl and helm, and a machine that can pull kind's node image.
#
#   e2e/kind/run.sh [LWSWS_BIN]   # with a binary: docker/build-local.sh; without: docker/Dockerfile
#
# KEEP_CLUSTER=1 leaves the cluster up for a look. Ends with "N passed, M failed".
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-}
for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "kind-e2e: $tool is missing"; echo "0 passed, 1 failed"; exit 1; }
done
cluster=lwsws-e2e-$$
image=lwsws:e2e-$$
ns=lwsws-e2e
release=lwsws
# Local ends of the port-forward: the ConfigMap vhost, the LwswsConfig vhost, the admin port.
cm_port=${CM_PORT:-18080}
crd_port=${CRD_PORT:-18081}
admin_port=${ADMIN_PORT:-19090}
work=$(mktemp -d)
pf_pid=""
# shellcheck source=e2e/tally.sh
source "$repo/e2e/tally.sh"

cleanup() {
  if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [ "${KEEP_CLUSTER:-}" = 1 ]; then
    echo "kind-e2e: keeping cluster $cluster (kind delete cluster --name $cluster)"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  docker rmi "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

finish() {
  if [ "$failed" -gt 0 ]; then
    kubectl -n "$ns" get pods,lwsc -o wide || true
    kubectl -n "$ns" logs "deployment/$release" --tail=50 || true
  fi
  tally
  exit
}
poll() { # SECONDS COMMAND...: until the command succeeds
  local until=$(($(date +%s) + $1)); shift
  while ! "$@"; do
    [ "$(date +%s)" -lt "$until" ] || return 1
    sleep 1
  done
}
# Output is read whole before grep: with pipefail, grep -q leaving early could fail the writer.
header_is() { # PORT HEADER VALUE
  local out
  out=$(curl -sS --max-time 5 -o /dev/null -D - "http://127.0.0.1:$1/" 2>/dev/null) &&
    grep -qix "$2: $3" <<<"${out//$'\r'/}"
}
body_has() { local out; out=$(curl -fsS --max-time 5 "http://127.0.0.1:$1$2" 2>/dev/null) && grep -q "$3" <<<"$out"; }
condition() { # RESOURCE TYPE: prints the condition's status
  kubectl -n "$ns" get "$1" -o jsonpath="{.status.conditions[?(@.type==\"$2\")].status}" 2>/dev/null
}
condition_is() { [ "$(condition "$1" "$2")" = "$3" ]; }

site_configmap() { # HEADER_VALUE: the ConfigMap the release mounts, with one vhost on 8080
  cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: site-config
  namespace: $ns
data:
  conf: |
    { "global": { "server-string": "lwsws-e2e" } }
  site: |
    # the ConfigMap-driven vhost
    { "vhosts": [{
      "name": "cm.example", "port": "8080",
      "headers": [{ "X-E2E": "$1" }],
      "mounts": [{ "mountpoint": "/", "origin": "file:///usr/share/lwsws-demo", "default": "index.html" }]
    }] }
YAML
}

echo "--- image $image"
if [ -n "$bin" ]; then
  "$repo/docker/build-local.sh" "$bin" "$image"
else
  docker build -f "$repo/docker/Dockerfile" -t "$image" "$repo"
fi

echo "--- cluster $cluster"
kind create cluster --name "$cluster" --wait 180s
kubectl config use-context "kind-$cluster" >/dev/null
kind load docker-image "$image" --name "$cluster"
kubectl create namespace "$ns"
site_configmap v1 | kubectl apply -f -

cat >"$work/values.yaml" <<YAML
image:
  repository: ${image%%:*}
  tag: ${image#*:}
  pullPolicy: Never
replicaCount: 1
logFormat: text
kubernetes:
  enabled: true
config:
  existingConfigMap: site-config
  existingConfigMapConfD: [site]
ports:
  - { name: cm, containerPort: 8080, servicePort: 8080 }
  - { name: crd, containerPort: 8081, servicePort: 8081 }
YAML
echo "--- helm install"
if helm install "$release" "$repo/charts/lwsws" -n "$ns" -f "$work/values.yaml" --wait --timeout 180s; then
  ok "helm install (Kubernetes mode, existing ConfigMap) becomes ready"
else
  bad "helm install (Kubernetes mode, existing ConfigMap) becomes ready"
  finish
fi
check "the CRD is installed" kubectl get crd lwswsconfigs.lwsws.io

kubectl apply -f - <<YAML
apiVersion: lwsws.io/v1alpha1
kind: LwswsConfig
metadata:
  name: crd-site
  namespace: $ns
spec:
  vhosts:
    - name: crd.example
      port: "8081"
      headers:
        - X-E2E-Source: lwswsconfig
      mounts:
        - mountpoint: /
          origin: file:///usr/share/lwsws-demo
          default: index.html
YAML
check "LwswsConfig crd-site is Accepted" poll 60 condition_is lwsc/crd-site Accepted True
check "LwswsConfig crd-site is Programmed" poll 60 condition_is lwsc/crd-site Programmed True
kubectl -n "$ns" get lwsc

kubectl -n "$ns" port-forward "deployment/$release" \
  "$cm_port:8080" "$crd_port:8081" "$admin_port:9090" >"$work/port-forward.log" 2>&1 &
pf_pid=$!
poll 30 curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/healthz" || true

check "ConfigMap vhost serves the demo page" poll 30 body_has "$cm_port" / "lwsws is running"
check "ConfigMap vhost sends X-E2E: v1" header_is "$cm_port" X-E2E v1
check "LwswsConfig vhost serves the demo page" poll 30 body_has "$crd_port" / "lwsws is running"
check "LwswsConfig vhost sends its header" header_is "$crd_port" X-E2E-Source lwswsconfig
check "/readyz on the admin port" curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/readyz"
check "/metrics has lwsws samples" body_has "$admin_port" /metrics "^lwsws_"

echo "--- editing the ConfigMap (kubelet syncs it within about a minute)"
pod_before=$(kubectl -n "$ns" get pods -l "app.kubernetes.io/instance=$release" -o jsonpath='{.items[*].metadata.uid}')
site_configmap v2 | kubectl apply -f -
check "the ConfigMap edit is served without a restart" poll 150 header_is "$cm_port" X-E2E v2
check "same pod, no restarts" test "$(kubectl -n "$ns" get pods -l "app.kubernetes.io/instance=$release" \
  -o jsonpath='{.items[*].metadata.uid} {.items[*].status.containerStatuses[0].restartCount}')" = "$pod_before 0"

echo "--- a bad LwswsConfig"
kubectl apply -f - <<YAML
apiVersion: lwsws.io/v1alpha1
kind: LwswsConfig
metadata:
  name: broken
  namespace: $ns
spec:
  vhosts:
    - name: broken.example
      port: "not-a-port"
      mounts:
        - mountpoint: /
          origin: file:///usr/share/lwsws-demo
YAML
check "LwswsConfig broken is not Accepted" poll 60 condition_is lwsc/broken Accepted False
kubectl -n "$ns" get lwsc broken -o jsonpath='{.status.conditions[?(@.type=="Accepted")].message}{"\n"}' || true
check "the good vhosts keep serving" header_is "$crd_port" X-E2E-Source lwswsconfig

finish
