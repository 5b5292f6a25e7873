# shellcheck shell=bash
# The pass/fail tally of the e2e and docker scripts, sourced by them: `ok NAME`, `bad NAME`,
# `check NAME CMD...` (ok or bad by CMD's status), and `tally` (prints "N passed, M failed" and
# succeeds only when nothing failed).
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
tally() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }
