#!/usr/bin/env bash
# Builds the lwsws runtime image from a binary built on this host, without pulling anything:
# docker/rootfs.sh lays out the files, and the image is the final stage of docker/Dockerfile
# (FROM scratch, user, ports, command) with the build stage's output replaced by that layout.
# docker/Dockerfile itself needs base images that cannot be pulled here.
#
#   docker/build-local.sh target/release/lwsws [TAG]      # TAG defaults to lwsws:local
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: docker/build-local.sh BINARY [TAG]}
tag=${2:-lwsws:local}
command -v docker >/dev/null 2>&1 || { echo "build-local: docker is missing" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$here/rootfs.sh" "$bin" "$ctx/rootfs"

# The final stage, from its FROM to the end, reading the layout from the context instead.
awk '/^FROM /{ stage = "" } { stage = stage $0 "\n" } END { printf "%s", stage }' "$here/Dockerfile" |
  sed 's|^COPY --from=build /rootfs/ /$|COPY rootfs/ /|' >"$ctx/Dockerfile"
if ! grep -q '^FROM scratch$' "$ctx/Dockerfile" || ! grep -q '^COPY rootfs/ /$' "$ctx/Dockerfile"; then
  echo "build-local: the final stage of docker/Dockerfile is not 'FROM scratch' + 'COPY --from=build /rootfs/ /'" >&2
  exit 1
fi

if ! docker build -q -t "$tag" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  exit 1
fi
bytes=$(docker image inspect -f '{{.Size}}' "$tag")
echo "build-local: built $tag, $(awk -v b="$bytes" 'BEGIN { printf "%.1f MB (%d bytes)", b / 1000000, b }')"
