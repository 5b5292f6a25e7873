# shellcheck shell=bash
# Sourced by the scripts that run the demo site (smoke test, browser, promtool): the demo config
# from conf/ on a port of the run's own, so that another server on 7681 (the demo's default,
# which stays the default) can neither make a run fail nor answer in its place.
#
#   demo_config DIR            copies conf/ into DIR, its vhost on 127.0.0.1 port 0
#   demo_start BIN DIR LOG ... starts BIN on DIR (extra args after LOG), sets demo_pid
#   demo_port LOG              waits for the server's "listening" line, prints the port it got

demo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo_pid=""

demo_config() {
  local dir=$1
  mkdir -p "$dir"
  cp -r "$demo_root/conf/." "$dir/"
  grep -q '"port": "7681",' "$dir/conf.d/localhost" || {
    echo "demo_config: no \"port\": \"7681\" in conf/conf.d/localhost to replace" >&2
    return 1
  }
  sed -i 's/"port": "7681",/"port": "0", "interface": "127.0.0.1",/' "$dir/conf.d/localhost"
}

demo_start() {
  local bin=$1 dir=$2 log=$3
  shift 3
  # NO_COLOR: the log is parsed (demo_port) and shown to people reading CI output.
  NO_COLOR=1 "$bin" -c "$dir" --data-dir "$dir/share" "$@" >"$log" 2>&1 &
  demo_pid=$!
}

# The kernel picked the port (port 0): read it back from the server's own log, which says
# `listening addrs=["127.0.0.1:PORT"]`. Waits up to 30 s; fails, showing the log, if the
# server exits or never says so.
demo_port() {
  local log=$1 port=""
  for _ in $(seq 1 300); do
    port=$(grep -o 'listening addrs=\["127\.0\.0\.1:[0-9]*' "$log" | head -1 | sed 's/.*://')
    if [ -n "$port" ]; then
      echo "$port"
      return 0
    fi
    if ! kill -0 "$demo_pid" 2>/dev/null; then
      echo "demo_port: lwsws exited before listening; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "demo_port: no 'listening' line in 30 s; the log:" >&2
  cat "$log" >&2
  return 1
}
