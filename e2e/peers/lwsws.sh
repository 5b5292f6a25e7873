# shellcheck shell=bash
# Sourced by the peer scripts: starting lwsws for a peer, and stopping it and removing the temp
# dir on exit. The sourcing script defines log() and die() and the variables SERVER_PID and TMP.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_lwsws BIN CONFDIR LOG PORT... : runs lwsws in the background (SERVER_PID) and waits up
# to 10 s for every PORT to accept connections; RUST_LOG as the caller set it.
start_lwsws() {
    local bin="$1" confdir="$2" logfile="$3" i p all
    shift 3
    "$bin" -c "$confdir" >"$logfile" 2>&1 &
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            tail -n 20 "$logfile" >&2
            die "lwsws exited during startup"
        fi
        all=1
        for p in "$@"; do port_open "$p" || all=0; done
        ((all)) && return 0
        sleep 0.1
    done
    die "lwsws did not listen on 127.0.0.1:{$*} within 10 s"
}

# The EXIT trap: stop lwsws (TERM, then KILL after 5 s) and remove TMP unless KEEP_TMP=1.
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    local i
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "keeping $TMP"; else rm -rf -- "$TMP"; fi
    fi
}
