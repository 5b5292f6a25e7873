#!/usr/bin/env bash
# Browser end-to-end test of the demo site: starts lwsws on the demo config (on a port the kernel
# picks, not 7681, so another server there cannot interfere: scripts/demo-server.sh) and drives the test page and the server-status page in headless Chromium via WebDriver.
#
#   e2e/browser/run.sh [path/to/lwsws]      (default: target/release/lwsws in the repo root)
#
# Installs chromium + chromium-driver (apt) and selenium (pip) only when they are missing.
# Env: ARTEFACT_DIR (screenshots, server log; default /tmp/lwsws-artefacts), PYTHON (python3).
# The last line printed is "1 passed, 0 failed" or "0 passed, 1 failed".

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-target/release/lwsws}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
PYTHON="${PYTHON:-python3}"
export ARTEFACT_DIR="${ARTEFACT_DIR:-/tmp/lwsws-artefacts}"
# shellcheck source=scripts/demo-server.sh
source "$ROOT/scripts/demo-server.sh"

SERVER_PID=""
RUN_DIR=""

finish() {
    local status=$1
    if [ "$status" -eq 0 ]; then
        echo "1 passed, 0 failed"
    else
        echo "0 passed, 1 failed"
    fi
    exit "$status"
}

fail() {
    echo "FAIL: $*" >&2
    finish 1
}

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$SERVER_PID" 2>/dev/null && kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    [ -n "$RUN_DIR" ] && rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

[ -x "$BIN" ] || fail "no lwsws binary at $BIN (build it, or pass its path as the first argument)"

# --- what the test needs ---------------------------------------------------------------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing chromium and chromium-driver (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends chromium chromium-driver; } \
        || fail "could not install chromium and chromium-driver"
fi
if ! "$PYTHON" -c 'import selenium' 2>/dev/null; then
    echo "installing selenium (pip)"
    "$PYTHON" -m pip install -q selenium || fail "could not install selenium"
fi

# --- the server ------------------------------------------------------------------------
mkdir -p "$ARTEFACT_DIR"
RUN_DIR="$(mktemp -d /tmp/lwsws-e2e.XXXXXX)"
demo_config "$RUN_DIR" || fail "cannot make the demo config"
SERVER_LOG="$ARTEFACT_DIR/lwsws.log"
demo_start "$BIN" "$RUN_DIR" "$SERVER_LOG"
SERVER_PID=$demo_pid
PORT=$(demo_port "$SERVER_LOG") || fail "lwsws did not start (log: $SERVER_LOG)"
export LWSWS_URL="http://127.0.0.1:$PORT/"
echo "started lwsws (pid $SERVER_PID) on port $PORT, log $SERVER_LOG"

# --- the test --------------------------------------------------------------------------
"$PYTHON" "$HERE/test_demo_page.py"
status=$?
if [ "$status" -ne 0 ]; then
    echo "test_demo_page.py failed (exit $status); server log: $SERVER_LOG" >&2
    finish 1
fi
finish 0
