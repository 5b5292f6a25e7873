#!/usr/bin/env bash
# Rebuild time and memory of the Gateway API front end for many HTTPRoutes: runs the
# `#[ignore]`d benchmark tests/route_scale.rs (in memory, no API server, no network) with
#   cargo test --release --test route_scale -- --ignored --nocapture
# and prints its table and its RESULT line.
#
# Usage (from anywhere):  bench/routes.sh
# Environment:
#   ROUTES     HTTPRoutes (default 1000)            SERVICES   Services (default 100)
#   ENDPOINTS  endpoints per Service (default 10)   HOSTS      distinct hostnames (default: ROUTES)
#   ROUNDS     timed rebuilds (default 20)          HOLD       copies held for the size slopes (default 8)
#   BUILD_LOCK a file to hold with flock(1) around the build only (e.g. /tmp/lwsws-cargo.lock on
#              a shared machine); the timed run happens after the lock is released
#
# Prints, per round, the milliseconds of each stage (translate, endpoints, assemble, validate,
# compile) and of the whole rebuild, their medians, the resident memory the process grew by, and
#   RESULT routes routes=... services=... endpoints=... vhosts=... mounts=... translate_ms=... ... total_ms=... table_kib=... config_kib=...
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/common.sh
source bench/common.sh

for v in ROUTES SERVICES ENDPOINTS HOSTS ROUNDS HOLD; do
    if [[ -n "${!v:-}" ]]; then
        [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
        export "ROUTE_SCALE_$v=${!v}"
    fi
done
command -v cargo >/dev/null 2>&1 || die "cargo not found"

lock=()
[[ -n "${BUILD_LOCK:-}" ]] && lock=(flock "$BUILD_LOCK")
log "building tests/route_scale.rs (cargo test --release --test route_scale --no-run)"
"${lock[@]}" cargo test --release --test route_scale --no-run >&2

out="$(mktemp -t lwsws-routes.XXXXXX)"
trap 'rm -f "$out"' EXIT
log "running: cargo test --release --test route_scale -- --ignored --nocapture"
if ! cargo test --release --test route_scale -- --ignored --nocapture >"$out" 2>&1; then
    cat "$out" >&2
    die "the route_scale benchmark failed"
fi
grep -q '^RESULT routes ' "$out" || {
    cat "$out" >&2
    die "no RESULT line in the benchmark's output"
}
# The benchmark's own report: from its first line to its RESULT line.
sed -n '/^route_scale: /,/^RESULT routes /p' "$out"
