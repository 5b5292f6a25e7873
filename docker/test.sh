#!/usr/bin/env bash
# Tests the runtime image built by docker/build-local.sh from a host binary: the demo when nothing
# is mounted, a mounted config directory, edits to the mounted files seen without a restart, a
# bad edit refused while the last good config keeps serving, kubelet's ..data swap of a ConfigMap
# volume in a container locked down like the chart's pod, a bad config at startup (exit 64),
# the non-root user, the admin endpoints, a clean `docker stop`, and the image size (goal 30 MB).
#
#   docker/test.sh target/release/lwsws
#
# The containers run with --network none and curl reaches them on their own loopback through
# nsenter: no traffic leaves 127.0.0.1 and no host port is taken. Removes its containers and
# image, ends with "N passed, M failed", and exits non-zero on any failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$repo/target/release/lwsws}
for tool in docker curl nsenter ldd; do
  command -v "$tool" >/dev/null 2>&1 || { echo "docker-test: $tool is missing"; echo "0 passed, 1 failed"; exit 1; }
done
if ! docker info >/dev/null 2>&1; then
  echo "docker-test: the Docker daemon does not answer"; echo "0 passed, 1 failed"; exit 1
fi
tag=lwsws-test:$$
size_goal=30000000
work=$(mktemp -d)
containers=()
# shellcheck source=e2e/tally.sh
source "$repo/e2e/tally.sh"

cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  docker rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

finish() {
  tally
  exit
}

# curl inside the container's network namespace: 127.0.0.1 there is the container itself.
ccurl() {
  local pid
  pid=$(docker inspect -f '{{.State.Pid}}' "$1") && [ "$pid" != 0 ] || return 1
  shift
  nsenter --net="/proc/$pid/ns/net" curl -sS --max-time 5 "$@"
}
start() { # NAME [docker run options]: starts a detached container on the image's default command
  local name=$1; shift
  containers+=("$name")
  docker run -d --name "$name" --network none "$@" "$tag" >/dev/null
}
wait_healthy() { # NAME: the admin listener answers within 10 s
  for _ in $(seq 1 50); do
    [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ] || break
    ccurl "$1" -f -o /dev/null http://127.0.0.1:9090/healthz 2>/dev/null && return 0
    sleep 0.2
  done
  echo "--- logs of $1"; docker logs "$1" 2>&1 | tail -20
  return 1
}
refused() { ! ccurl "$1" -o /dev/null --max-time 2 "$2" 2>/dev/null; }
# Output is read whole before grep: with pipefail, grep -q leaving early could fail the writer.
body_has() { local out; out=$(ccurl "$1" -f "$2" 2>/dev/null) && grep -q "$3" <<<"$out"; }
header_has() { local out; out=$(ccurl "$1" -f -o /dev/null -D - "$2" 2>/dev/null) && grep -qi "$3" <<<"${out//$'\r'/}"; }
logs_have() { local out; out=$(docker logs "$1" 2>&1) && grep -q "$2" <<<"$out"; }
poll() { # up to 10 s until the command succeeds
  for _ in $(seq 1 50); do "$@" && return 0; sleep 0.2; done
  return 1
}

echo "--- building the image from $bin"
if ! "$repo/docker/build-local.sh" "$bin" "$tag"; then
  bad "image builds"
  finish
fi
ok "image builds"
bytes=$(docker image inspect -f '{{.Size}}' "$tag")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1000000 }')
check "image size ${mb} MB (goal: under 30 MB)" test "$bytes" -le "$size_goal"
check "image user is 65532" test "$(docker image inspect -f '{{.Config.User}}' "$tag")" = "65532:65532"
check "image has no shell" bash -c "! docker run --rm --network none --entrypoint /bin/sh '$tag' -c true 2>/dev/null"

echo "--- the demo, with nothing mounted"
start lwsws-test-demo-$$
if wait_healthy lwsws-test-demo-$$; then
  check "demo page on 7681" body_has lwsws-test-demo-$$ http://127.0.0.1:7681/ "lwsws is running"
  check "/readyz on the admin port" ccurl lwsws-test-demo-$$ -f -o /dev/null http://127.0.0.1:9090/readyz
  check "/metrics on the admin port" body_has lwsws-test-demo-$$ http://127.0.0.1:9090/metrics "^lwsws_"
  pid=$(docker inspect -f '{{.State.Pid}}' lwsws-test-demo-$$)
  check "process runs as uid 65532" test "$(ps -o uid= -p "$pid" | tr -d ' ')" = 65532
  started=$(date +%s)
  docker stop -t 10 lwsws-test-demo-$$ >/dev/null
  took=$(($(date +%s) - started))
  code=$(docker inspect -f '{{.State.ExitCode}}' lwsws-test-demo-$$)
  check "docker stop: exit $code after ${took} s (want 0, before the 10 s kill)" test "$code" = 0 -a "$took" -lt 10
else
  bad "demo container starts"
fi

echo "--- a mounted config directory and site"
etc=$work/etc
mkdir -p "$etc/conf.d" "$work/www/v1" "$work/www/v2"
echo '<p>mounted site v1</p>' >"$work/www/v1/index.html"
echo '<p>mounted site v2</p>' >"$work/www/v2/index.html"
echo '{ "global": { "server-string": "lwsws-test" } }' >"$etc/conf"
site() { # ORIGIN HEADER_VALUE: a vhost file for port 8080
  cat <<SITE
# the test vhost
{ "vhosts": [{
  "name": "localhost", "port": "8080",
  "headers": [{ "X-Lwsws-Test": "$2" }],
  "mounts": [{ "mountpoint": "/", "origin": "file://$1", "default": "index.html" }]
}] }
SITE
}
site /srv/www/v1 first >"$etc/conf.d/site"
# The container user (65532) reads the files: mktemp made the directory private.
chmod -R a+rX "$work"

start lwsws-test-mounted-$$ -v "$etc:/etc/lwsws:ro" -v "$work/www:/srv/www:ro"
if wait_healthy lwsws-test-mounted-$$; then
  c=lwsws-test-mounted-$$
  check "mounted vhost serves the mounted site" body_has "$c" http://127.0.0.1:8080/ "mounted site v1"
  check "mounted vhost sends its header" header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: first"
  check "the mounted config replaced the demo (7681 closed)" refused "$c" http://127.0.0.1:7681/
  pid_before=$(docker inspect -f '{{.State.Pid}}' "$c")

  # An editor's save: a new file renamed over the old one, within the mounted directory.
  site /srv/www/v2 renamed >"$etc/.site.new"
  chmod a+r "$etc/.site.new"
  mv "$etc/.site.new" "$etc/conf.d/site"
  check "edit by rename: the new mount is served without a restart" \
    poll body_has "$c" http://127.0.0.1:8080/ "mounted site v2"
  check "edit by rename: the new header is sent" header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: renamed"

  # An in-place write into the same file.
  site /srv/www/v2 in-place >"$etc/conf.d/site"
  check "edit in place: the change is served without a restart" \
    poll header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: in-place"

  # A broken edit: refused, and the last good config keeps serving.
  echo '{ "vhosts": [ { "name": "localhost", "port": ' >"$etc/conf.d/site"
  sleep 2
  check "bad edit refused: the last good config keeps serving" \
    header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: in-place"
  check "bad edit logged with its file:line:col" logs_have "$c" 'conf.d/site:[0-9]*:[0-9]*'
  site /srv/www/v1 repaired >"$etc/conf.d/site"
  check "repaired edit applies" poll header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: repaired"

  check "no restart: same process, restart count 0" \
    test "$(docker inspect -f '{{.State.Pid}} {{.RestartCount}} {{.State.Running}}' "$c")" = "$pid_before 0 true"
else
  bad "mounted container starts"
fi

echo "--- a directory laid out as kubelet mounts a ConfigMap, updated by its ..data swap"
kube=$work/kube
swap() { # N HEADER_VALUE: a new timestamped dir, then ..data renamed onto it, as kubelet does
  local dir=..2026_01_01_00_00_0$1 old
  old=$(readlink "$kube/..data" 2>/dev/null || true)
  mkdir -p "$kube/$dir/conf.d"
  echo '{ "global": { "server-string": "lwsws-test" } }' >"$kube/$dir/conf"
  site /srv/www/v1 "$2" >"$kube/$dir/conf.d/site"
  chmod -R a+rX "$kube"
  ln -sfn "$dir" "$kube/..data_tmp"
  mv -T "$kube/..data_tmp" "$kube/..data"
  if [ -n "$old" ]; then rm -rf "${kube:?}/$old"; fi
}
mkdir -p "$kube"
chmod a+rx "$kube"
swap 1 kube-1
ln -s ..data/conf "$kube/conf"
ln -s ..data/conf.d "$kube/conf.d"
# Locked down as the chart's pod is: read-only root, a /tmp of its own, no capabilities but
# NET_BIND_SERVICE, no privilege escalation.
start lwsws-test-kube-$$ -v "$kube:/etc/lwsws:ro" -v "$work/www:/srv/www:ro" --read-only --tmpfs /tmp \
  --cap-drop ALL --cap-add NET_BIND_SERVICE --security-opt no-new-privileges
if wait_healthy lwsws-test-kube-$$; then
  c=lwsws-test-kube-$$
  check "ConfigMap layout: served" header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: kube-1"
  swap 2 kube-2
  check "ConfigMap layout: first ..data swap applies" poll header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: kube-2"
  swap 3 kube-3
  check "ConfigMap layout: second ..data swap applies" poll header_has "$c" http://127.0.0.1:8080/ "^x-lwsws-test: kube-3"
else
  bad "ConfigMap-layout container starts"
fi

echo "--- a bad config at startup"
mkdir -p "$work/broken/conf.d"
echo '{ "global": { "server-string": "x" }' >"$work/broken/conf"
chmod -R a+rX "$work/broken"
code=0
docker run --rm --network none -v "$work/broken:/etc/lwsws:ro" "$tag" >"$work/broken.log" 2>&1 || code=$?
check "bad config at startup exits 64 (got $code)" test "$code" = 64

finish
