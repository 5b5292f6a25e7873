#!/usr/bin/env bash
# Autobahn|Testsuite (wstest -m fuzzingclient, RFC 6455 conformance) against lwsws's lws-echo
# protocol: a vhost on ws://127.0.0.1:17690 (no TLS) whose default protocol is lws-echo.
# Cases 12.* and 13.* (permessage-deflate, which lwsws does not offer) are excluded. Cases 9.*
# send messages of up to 16 MiB (9.1.6, 9.2.6): lws-echo's own limit is 1 MiB, so this vhost
# raises it with the "max-message-size" pvo, and every case runs.
#
#   e2e/peers/autobahn.sh [path/to/lwsws]   (default: target/release/lwsws in the repo root)
#
# Needs Python 2.7: Autobahn|Testsuite is Python 2 only (PyPI's autobahntestsuite 25.10.1 still
# fails to import under Python 3: `from _version import ...`), and neither Debian 12 nor PyPI
# ships a Python 2.7 interpreter, so the script cannot install one. It looks for AUTOBAHN_PYTHON,
# $(pyenv prefix 2.7.18)/bin/python2.7, then python2.7 on PATH; without one it FAILS (exit 2,
# "0 passed, 1 failed"), naming what is missing. Everything else it installs: python3-venv (apt)
# when python3 has no venv module, virtualenv==20.21.1 and autobahntestsuite (pip) into a
# virtualenv cached in AUTOBAHN_VENV (default ~/.cache/lwsws/autobahn-venv).
#
# Prints the count of each Autobahn verdict (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED,
# FAILED) and of each closing-handshake verdict, the ids of FAILED cases with Autobahn's reason,
# and writes them to $ARTEFACT_DIR/autobahn/summary.txt (ARTEFACT_DIR default
# /tmp/lwsws-artefacts), with the HTML/JSON reports in $ARTEFACT_DIR/autobahn/reports/.
# Ends with "N passed, M failed": failed = cases whose verdict is FAILED or whose closing
# handshake is not OK/INFORMATIONAL (AUTOBAHN_STRICT_CLOSE=0 counts the case verdicts only).
# Exit 0 if none failed, 1 if some did, 2 if the suite could not run (Python 2.7 missing too).
# Env: AUTOBAHN_TIMEOUT (seconds for wstest, default 600), RUST_LOG (default lwsws=info).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-target/release/lwsws}"
if [[ "$BIN" != /* ]]; then
    if [[ -x "$BIN" ]]; then BIN="$(pwd)/$BIN"; else BIN="$ROOT/$BIN"; fi
fi
PORT=17690
ARTEFACT_DIR="${ARTEFACT_DIR:-/tmp/lwsws-artefacts}"
OUT="$ARTEFACT_DIR/autobahn"
VENV="${AUTOBAHN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lwsws/autobahn-venv}"
WSTEST_TIMEOUT="${AUTOBAHN_TIMEOUT:-600}"

SERVER_PID=""
TMP=""

log() { printf '[autobahn] %s\n' "$*"; }
die() {
    printf '[autobahn] ERROR: %s\n' "$*" >&2
    echo "0 passed, 1 failed"
    exit 2
}

# shellcheck source=e2e/peers/lwsws.sh
source "$(dirname "${BASH_SOURCE[0]}")/lwsws.sh"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

is_py27() { [[ -n "$1" && -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; }

# --- Python 2.7 --------------------------------------------------------------------------------
PY27=""
for cand in "${AUTOBAHN_PYTHON:-}" \
    "$(pyenv prefix 2.7.18 2>/dev/null || true)/bin/python2.7" \
    "$(command -v python2.7 2>/dev/null || true)"; do
    if is_py27 "$cand"; then
        PY27="$cand"
        break
    fi
done
[[ -n "$PY27" ]] || die "missing: a Python 2.7 interpreter (Autobahn|Testsuite is Python 2 only; no Debian 12 or PyPI package ships one). Tried AUTOBAHN_PYTHON='${AUTOBAHN_PYTHON:-}', \$(pyenv prefix 2.7.18)/bin/python2.7 and python2.7 on PATH; set AUTOBAHN_PYTHON to one"
log "Python 2.7: $PY27"

[[ -x "$BIN" ]] || die "no lwsws binary at $BIN (build it, or pass its path as the first argument)"
port_open "$PORT" && die "something already listens on 127.0.0.1:$PORT; stop it first"
TMP="$(mktemp -d -t lwsws-autobahn.XXXXXX)"

# --- the virtualenv with autobahntestsuite -----------------------------------------------------
if [[ ! -x "$VENV/bin/wstest" ]] || ! is_py27 "$VENV/bin/python"; then
    log "making $VENV (virtualenv==20.21.1 -p $PY27, then pip install autobahntestsuite)"
    command -v python3 >/dev/null 2>&1 || die "missing: python3 (to bootstrap virtualenv)"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        log "installing python3-venv (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; } \
            || log "could not install python3-venv; trying pip --target instead"
    fi
    rm -rf -- "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if python3 -m venv "$TMP/boot" >/dev/null 2>&1; then
        "$TMP/boot/bin/pip" install -q virtualenv==20.21.1 || die "pip install virtualenv==20.21.1 failed"
        "$TMP/boot/bin/virtualenv" -q -p "$PY27" "$VENV" || die "virtualenv -p $PY27 failed"
    else
        # python3 without the venv module (Debian without python3-venv): install into a dir
        python3 -m pip install -q --target "$TMP/boot-lib" virtualenv==20.21.1 \
            || die "pip install virtualenv==20.21.1 failed"
        PYTHONPATH="$TMP/boot-lib" python3 -m virtualenv -q -p "$PY27" "$VENV" \
            || die "virtualenv -p $PY27 failed"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check autobahntestsuite 2>"$TMP/pip.log" \
        || { tail -n 20 "$TMP/pip.log" >&2; die "pip install autobahntestsuite failed"; }
    [[ -x "$VENV/bin/wstest" ]] || die "autobahntestsuite installed no wstest"
fi
log "wstest: $VENV/bin/wstest ($("$VENV/bin/pip" show autobahntestsuite 2>/dev/null | sed -n 's/^Version: //p'))"

# --- the server ----------------------------------------------------------------------------------
mkdir -p "$TMP/conf.d" "$TMP/www" "$OUT"
echo '<html><body>lwsws autobahn e2e</body></html>' >"$TMP/www/index.html"
echo '{ "global": { "ws-pingpong-secs": "0" } }' >"$TMP/conf"
cat >"$TMP/conf.d/echo" <<EOF
{
  "vhosts": [
    {
      "name": "localhost", "port": "$PORT", "interface": "127.0.0.1",
      "mounts": [ { "mountpoint": "/", "origin": "file://$TMP/www", "default": "index.html" } ],
      "ws-protocols": [ { "lws-echo": { "default": "1", "max-message-size": "16777216" } } ]
    }
  ]
}
EOF
SERVER_LOG="$OUT/lwsws.log"
RUST_LOG="${RUST_LOG:-lwsws=info}" start_lwsws "$BIN" "$TMP" "$SERVER_LOG" "$PORT"
log "lwsws $BIN (pid $SERVER_PID) on ws://127.0.0.1:$PORT (lws-echo default); log $SERVER_LOG"

# --- the suite -----------------------------------------------------------------------------------
REPORTS="$TMP/reports/servers"
cat >"$TMP/spec.json" <<EOF
{
  "outdir": "$REPORTS",
  "servers": [ { "agent": "lwsws", "url": "ws://127.0.0.1:$PORT" } ],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
EOF
log "wstest -m fuzzingclient -s spec.json (timeout ${WSTEST_TIMEOUT}s; output in $OUT/wstest.log)"
rc=0
(cd "$TMP" && timeout "$WSTEST_TIMEOUT" "$VENV/bin/wstest" -m fuzzingclient -s "$TMP/spec.json") \
    >"$OUT/wstest.log" 2>&1 || rc=$?
if ((rc == 124)); then
    tail -n 5 "$OUT/wstest.log" >&2
    die "wstest did not finish within ${WSTEST_TIMEOUT}s (last case above)"
fi
((rc == 0)) || { tail -n 20 "$OUT/wstest.log" >&2; die "wstest exited with $rc"; }
[[ -f "$REPORTS/index.json" ]] || die "wstest wrote no $REPORTS/index.json"
rm -rf -- "$OUT/reports"
cp -r "$REPORTS" "$OUT/reports"

server_note=""
kill -0 "$SERVER_PID" 2>/dev/null || server_note="lwsws exited during the suite (see $SERVER_LOG)"

# --- the verdicts --------------------------------------------------------------------------------
PYTHON=python3
command -v python3 >/dev/null 2>&1 || PYTHON="$PY27"
log "summary: $OUT/summary.txt, reports: $OUT/reports/index.html"
status=0
"$PYTHON" - "$OUT/reports/index.json" "$OUT/summary.txt" "${AUTOBAHN_STRICT_CLOSE:-1}" "$server_note" <<'EOF' || status=$?
import json, sys
from collections import Counter

index_path, summary_path, strict_close, server_note = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
index = json.load(open(index_path))
cases = index.get("lwsws")
if not cases:
    print("no results for agent lwsws in %s" % index_path)
    sys.exit(2)

def key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]

def detail(case):
    try:
        return json.load(open(index_path.rsplit("/", 1)[0] + "/" + case["reportfile"]))
    except Exception:
        return {}

behaviors = Counter(c["behavior"] for c in cases.values())
closes = Counter(c["behaviorClose"] for c in cases.values())
ids = sorted(cases, key=key)
failed_ids = [i for i in ids if cases[i]["behavior"] == "FAILED"]
close_bad = [i for i in ids if cases[i]["behaviorClose"] not in ("OK", "INFORMATIONAL")]
if strict_close:
    failed_ids = sorted(set(failed_ids) | set(close_bad), key=key)

lines = ["Autobahn|Testsuite fuzzingclient vs lwsws lws-echo (12.* and 13.* excluded): %d cases" % len(cases)]
for verdict in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"):
    lines.append("  %-14s %d" % (verdict, behaviors.get(verdict, 0)))
for verdict in sorted(set(behaviors) - {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"}):
    lines.append("  %-14s %d" % (verdict, behaviors[verdict]))
lines.append("closing handshake: " + ", ".join("%s %d" % kv for kv in sorted(closes.items())))
for i in ids:
    if cases[i]["behavior"] in ("FAILED", "NON-STRICT", "UNIMPLEMENTED"):
        d = detail(cases[i])
        what = " ".join(d.get("description", "").split("<br>")[0].split())[:110]
        lines.append("  %s %s (%s): %s" % (cases[i]["behavior"], i, what, d.get("result", "?")))
if close_bad:
    reasons = Counter()
    for i in close_bad:
        d = detail(cases[i])
        reasons["%s: %s" % (cases[i]["behaviorClose"], d.get("wasNotCleanReason") or d.get("resultClose", "?"))] += 1
    lines.append("closing handshake not OK in %d cases (%s ... %s):" % (len(close_bad), close_bad[0], close_bad[-1]))
    for reason, n in reasons.most_common():
        lines.append("  %4d x %s" % (n, reason))
passed, failed = len(cases) - len(failed_ids), len(failed_ids)
if server_note:
    lines.append(server_note)
    failed += 1
lines.append("%d passed, %d failed" % (passed, failed))
text = "\n".join(lines) + "\n"
open(summary_path, "w").write(text)
sys.stdout.write(text)
sys.exit(1 if failed else 0)
EOF
exit "$status"
