#!/usr/bin/env bash
# Runs every cargo fuzz target in fuzz/ for a bounded time (libFuzzer, on stable Rust with no
# sanitizer: `-s none`) and fails on a crash, a hang (one input over 10 s) or runaway memory.
# Installs cargo-fuzz when missing. Each run starts from the seed corpus in
# fuzz/corpus/TARGET/ (read only) and writes what it finds to a temp dir, so the repository's
# corpus stays small; a crashing input is kept in fuzz/artifacts/TARGET/ and printed in hex.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default 60 s each, every target
#
# Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
secs=${1:-60}
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz"
  cargo install cargo-fuzz --locked || { echo "[fuzz] cannot install cargo-fuzz"; echo "0 passed, 1 failed"; exit 1; }
fi
if (($#)); then targets=("$@"); else mapfile -t targets < <(cd fuzz && cargo fuzz list); fi
((${#targets[@]})) || { echo "[fuzz] no fuzz targets found"; echo "0 passed, 1 failed"; exit 1; }
echo "[fuzz] building ${targets[*]}"
if ! (cd fuzz && cargo fuzz build -s none); then
  echo "[fuzz] the fuzz targets do not build"
  echo "0 passed, 1 failed"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
for t in "${targets[@]}"; do
  [ -d "fuzz/corpus/$t" ] || { echo "FAIL $t: no seed corpus in fuzz/corpus/$t"; failed=$((failed + 1)); continue; }
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  echo "[fuzz] $t for ${secs}s"
  if (cd fuzz && cargo fuzz run -s none "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/") >"$work/$t.log" 2>&1; then
    echo "ok   $t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$') runs, no crash"
    passed=$((passed + 1))
  else
    echo "FAIL $t: libFuzzer's report:"
    grep -v '^#[0-9]' "$work/$t.log" | tail -n 40
    grep -o "artifacts/$t/[a-z]*-[0-9a-f]*" "$work/$t.log" | sort -u | while read -r a; do
      echo "input fuzz/$a (reproduce: cd fuzz && cargo fuzz run -s none $t $a):"
      od -A d -c "fuzz/$a" | head -n 20
    done
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
