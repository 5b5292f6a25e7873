#!/usr/bin/env bash
# Lints, renders and validates charts/lwsws offline (see check.py for the checks). Installs
# helm-python-sdk (Helm's Go SDK behind a C library: helm lint and helm template with no helm
# binary and no cluster) and kubernetes-validate from PyPI into a cached virtualenv. Fails, never
# skips, when anything is missing. Ends with "N passed, M failed".
#
#   e2e/chart/check.sh [LWSWS_BIN]     # the binary runs `lwsws --check` on the default config
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$repo/target/release/lwsws}
case $bin in /*) ;; *) [ -e "$bin" ] || bin=$repo/$bin; bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") ;; esac
venv=${CHART_VENV:-$HOME/.cache/lwsws/chart-venv}
packages=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0)

if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
  echo "[chart] installing ${packages[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}"
fi
exec "$venv/bin/python" "$repo/e2e/chart/check.py" "$bin"
