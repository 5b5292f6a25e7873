#!/usr/bin/env bash
# What CI can run of the container and cluster e2e on a machine with Docker but no image
# registry (kind needs to pull its node image): `bash -n` and shellcheck on every shell script
# under docker/, e2e/ and scripts/, then docker/test.sh on the image built from a host binary and
# docker/replicas.sh (three containers sharing ACME with Pebble). Installs the Debian package
# of shellcheck if missing; fails, never skips. Ends with "N passed, M failed".
#
#   e2e/kind/check.sh [LWSWS_BIN]      # default target/release/lwsws
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$repo/target/release/lwsws}
case $bin in /*) ;; *) [ -e "$bin" ] || bin=$repo/$bin ;; esac
cd "$repo"
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "[kind-check] installing shellcheck"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
# shellcheck source=e2e/tally.sh
source "$repo/e2e/tally.sh"

mapfile -t scripts < <(find docker e2e scripts -name '*.sh' -type f | sort)
for s in "${scripts[@]}"; do
  if bash -n "$s"; then ok "bash -n $s"; else bad "bash -n $s"; fi
done
# SC2317 ("unreachable") misreads functions that only run through trap or a wrapper.
if shellcheck -e SC2317 "${scripts[@]}"; then
  ok "shellcheck on ${#scripts[@]} scripts"
else
  bad "shellcheck on ${#scripts[@]} scripts"
fi

echo "[kind-check] docker/test.sh $bin"
if docker/test.sh "$bin"; then ok "docker/test.sh"; else bad "docker/test.sh"; fi
echo "[kind-check] docker/replicas.sh $bin"
if docker/replicas.sh "$bin"; then ok "docker/replicas.sh"; else bad "docker/replicas.sh"; fi
tally
