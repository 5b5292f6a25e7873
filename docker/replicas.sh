#!/usr/bin/env bash
# Three lwsws containers behind one network alias, sharing one volume at /var/lib/lwsws, get
# one certificate from Pebble between them: the image built by docker/build-local.sh, Pebble in
# an image built here FROM scratch around Debian's /usr/bin/pebble, all on a private Docker
# network whose embedded DNS answers the alias with the three containers, so Pebble's
# validations land on any of them (Pebble starts once the three are ready, as a load balancer
# sends only to ready ones). Checks: one order and one certificate at Pebble, the same
# certificate (chaining to Pebble's root) served by all three, one container that ordered, no
# lock or answer file left, and a fourth container on the same volume serving the stored
# certificate without a new order after the one that ordered is stopped.
#
#   docker/replicas.sh target/release/lwsws      # CHALLENGE=tls-alpn-01 for the other challenge
#
# Nothing leaves the host: the network is --internal and the host reaches the containers by
# their addresses on it. Removes its containers, network, volume and images, ends with
# "N passed, M failed", and exits non-zero on any failure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$repo/target/release/lwsws}
challenge=${CHALLENGE:-http-01}
for tool in docker openssl curl ldd; do
  command -v "$tool" >/dev/null 2>&1 || { echo "replicas: $tool is missing"; echo "0 passed, 1 failed"; exit 1; }
done
if ! docker info >/dev/null 2>&1; then
  echo "replicas: the Docker daemon does not answer"; echo "0 passed, 1 failed"; exit 1
fi
if ! command -v pebble >/dev/null 2>&1; then
  echo "[replicas] installing pebble"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pebble >/dev/null
fi
pebble_bin=$(command -v pebble)
id=$$
tag=lwsws-replicas:$id
pebble_tag=lwsws-replicas-pebble:$id
net=lwsws-replicas-$id
vol=lwsws-replicas-$id
pebble_name=lwsws-replicas-pebble-$id
domain=replicas.test
http_port=8080
tls_port=8443
work=$(mktemp -d)
containers=()
images=()
volume_made=
network_made=
# shellcheck source=e2e/tally.sh
source "$repo/e2e/tally.sh"

cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  [ -z "$volume_made" ] || docker volume rm -f "$vol" >/dev/null 2>&1 || true
  [ -z "$network_made" ] || docker network rm "$net" >/dev/null 2>&1 || true
  for i in "${images[@]}"; do docker rmi -f "$i" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

show_logs() {
  for c in "${containers[@]}"; do
    echo "--- logs of $c"
    docker logs "$c" 2>&1 | tail -40
  done
}
finish() {
  [ "$failed" -eq 0 ] || show_logs
  echo "replicas: $(($(date +%s) - t0)) s in all"
  tally
  exit
}
t0=$(date +%s)

echo "--- images: lwsws from $bin, Pebble from $pebble_bin"
images+=("$tag")
if ! "$repo/docker/build-local.sh" "$bin" "$tag"; then
  bad "lwsws image builds"
  finish
fi

# Pebble's listener: a CA of this run and a certificate for the name "pebble" signed by it (a
# self-signed leaf would be a CA used as an end entity, which rustls refuses).
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=replicas-test-ca \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pebble \
  -keyout "$pki/key.pem" -out "$pki/pebble.csr" 2>/dev/null
printf 'subjectAltName = DNS:pebble\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n' >"$pki/ext"
openssl x509 -req -in "$pki/pebble.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$pki/ext" -out "$pki/cert.pem" 2>/dev/null

# Debian builds Pebble with cgo, so it links libc: the image carries what ldd names.
ctx=$work/pebble-image
mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/etc/pebble"
cp -L "$pebble_bin" "$ctx/rootfs/usr/bin/pebble"
if ldd_out=$(ldd "$pebble_bin" 2>&1); then
  while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)
fi
cp "$pki/cert.pem" "$pki/key.pem" "$ctx/rootfs/etc/pebble/"
printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
cat >"$ctx/rootfs/etc/pebble/pebble.json" <<JSON
{ "pebble": {
  "listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
  "certificate": "/etc/pebble/cert.pem", "privateKey": "/etc/pebble/key.pem",
  "httpPort": $http_port, "tlsPort": $tls_port,
  "ocspResponderURL": "", "externalAccountBindingRequired": false
} }
JSON
chmod -R a+rX "$ctx/rootfs"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
USER 65532:65532
ENTRYPOINT ["/usr/bin/pebble", "-config", "/etc/pebble/pebble.json"]
DOCKERFILE
images+=("$pebble_tag")
if ! docker build -q -t "$pebble_tag" "$ctx" >"$work/pebble-build.log" 2>&1; then
  cat "$work/pebble-build.log"
  bad "Pebble image builds"
  finish
fi
ok "images build (lwsws and Pebble, FROM scratch)"

# The shared state: a named volume over a directory the image's user (65532) owns.
state=$work/state
mkdir -p "$state"
if ! chown 65532:65532 "$state"; then
  bad "the volume's directory handed to uid 65532 (needs root)"
  finish
fi
chmod 0700 "$state"
docker volume create --driver local --opt type=none --opt o=bind --opt device="$state" "$vol" >/dev/null
volume_made=1
docker network create --internal "$net" >/dev/null
network_made=1

# One config for every replica: a plain vhost (http-01 answers) and the ACME vhost on TLS.
etc=$work/etc
mkdir -p "$etc/conf.d" "$work/ca"
cp "$pki/ca.pem" "$work/ca/ca.pem"
echo '{ "global": { "server-string": "lwsws-replicas" } }' >"$etc/conf"
cat >"$etc/conf.d/plain" <<JSON
{ "vhosts": [{ "name": "plain", "port": "$http_port",
  "mounts": [{ "mountpoint": "/", "origin": "file:///usr/share/lwsws-demo", "default": "index.html" }] }] }
JSON
cat >"$etc/conf.d/acme" <<JSON
{ "vhosts": [{ "name": "$domain", "port": "$tls_port",
  "acme": { "email": "admin@example.test", "directory-url": "https://pebble:14000/dir",
            "ca-file": "/etc/pebble-ca/ca.pem", "challenge": "$challenge" },
  "mounts": [{ "mountpoint": "/", "origin": "file:///usr/share/lwsws-demo", "default": "index.html" }] }] }
JSON
chmod -R a+rX "$etc" "$work/ca"
chmod a+x "$work"

ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$1"; }

replica() { # N: starts replica N on the shared volume and config, under the shared alias
  local name=lwsws-replicas-$1-$id
  containers+=("$name")
  docker run -d --name "$name" --hostname "$name" --network "$net" --network-alias "$domain" \
    -v "$vol:/var/lib/lwsws" -v "$etc:/etc/lwsws:ro" -v "$work/ca:/etc/pebble-ca:ro" \
    -e RUST_LOG=info -e POD_NAME="$name" "$tag" >/dev/null
}
# The SHA-256 fingerprint of the certificate IP serves for the domain, once it verifies against
# Pebble's root with the chain the server sends and names the domain; empty otherwise.
served() {
  local out dir=$work/served-$1
  mkdir -p "$dir"
  out=$(timeout 5 openssl s_client -connect "$1:$tls_port" -servername "$domain" -showcerts </dev/null 2>/dev/null) || return 0
  awk -v d="$dir" '/-BEGIN CERTIFICATE-/ { n++; pem = 1 } pem { print > (d "/" n ".pem") }
    /-END CERTIFICATE-/ { pem = 0; close(d "/" n ".pem") }' <<<"$out"
  [ -s "$dir/1.pem" ] || return 0
  cat "$dir"/[2-9].pem >"$dir/chain.pem" 2>/dev/null || : >"$dir/chain.pem"
  openssl verify -CAfile "$work/root.pem" -untrusted "$dir/chain.pem" -verify_hostname "$domain" \
    "$dir/1.pem" >/dev/null 2>&1 || return 0
  openssl x509 -in "$dir/1.pem" -noout -fingerprint -sha256 | cut -d= -f2
}
all_serve() { # NAMES...: waits up to 60 s until each serves a verified certificate; prints them
  local c fp got
  for _ in $(seq 1 120); do
    got=()
    for c in "$@"; do
      fp=$(served "$(ip_of "$c")")
      [ -n "$fp" ] || break
      got+=("$fp")
    done
    if [ "${#got[@]}" = "$#" ]; then printf "%s\n" "${got[@]}"; return 0; fi
    sleep 0.5
  done
  return 1
}
pebble_count() { local out; out=$(docker logs "$pebble_name" 2>&1); grep -c "$1" <<<"$out" || true; }
ordered_in() { local out; out=$(docker logs "$1" 2>&1); grep -q 'ACME: ordering a certificate' <<<"$out"; }
not() { ! "$@"; }
poll() { # up to 10 s until the command succeeds
  for _ in $(seq 1 50); do "$@" && return 0; sleep 0.2; done
  return 1
}
no_files_in() { [ -z "$(find "$1" -type f 2>/dev/null)" ]; }

echo "--- three replicas, challenge $challenge"
started=$(date +%s)
for n in 1 2 3; do replica "$n"; done
three=(lwsws-replicas-1-"$id" lwsws-replicas-2-"$id" lwsws-replicas-3-"$id")
# The alias answers with a container as soon as it joins the network, before lwsws listens,
# and Pebble validates from three perspectives: the CA comes up once every replica is ready,
# as a load balancer sends only to ready ones. Until then the replica holding the claim fails
# to reach the directory and retries; no order reaches Pebble.
for c in "${three[@]}"; do
  if ! poll curl -sf --max-time 2 -o /dev/null "http://$(ip_of "$c"):9090/readyz"; then
    bad "$c ready within 10 s"
    finish
  fi
done
ok "three replicas ready under the alias $domain"
containers+=("$pebble_name")
docker run -d --name "$pebble_name" --network "$net" --network-alias pebble -e PEBBLE_VA_NOSLEEP=1 \
  "$pebble_tag" >/dev/null
pebble_ip=$(ip_of "$pebble_name")
pcurl() { curl -sS --max-time 5 --cacert "$pki/ca.pem" --resolve "pebble:15000:$pebble_ip" --resolve "pebble:14000:$pebble_ip" "$@"; }
up=
for _ in $(seq 1 50); do
  if pcurl -f -o /dev/null https://pebble:14000/dir 2>/dev/null; then up=1; break; fi
  sleep 0.2
done
if [ -z "$up" ]; then
  bad "Pebble answers on its directory"
  finish
fi
ok "Pebble answers on https://pebble:14000/dir with the listener certificate for DNS:pebble"
if ! pcurl -f -o "$work/root.pem" https://pebble:15000/roots/0; then
  bad "Pebble's root from its management port"
  finish
fi

if fps=$(all_serve "${three[@]}"); then
  ok "all three serve a certificate chaining to Pebble's root for $domain after $(($(date +%s) - started)) s"
  check "all three serve the same certificate" test "$(sort -u <<<"$fps" | wc -l)" = 1
  cert_fp=$(head -1 <<<"$fps")
else
  bad "all three serve a certificate chaining to Pebble's root for $domain within 60 s"
  finish
fi
check "Pebble took one order (got $(pebble_count 'Added order'))" test "$(pebble_count 'Added order')" = 1
check "Pebble issued one certificate (got $(pebble_count 'Issued certificate serial'))" \
  test "$(pebble_count 'Issued certificate serial')" = 1
if [ "$challenge" = tls-alpn-01 ]; then
  # Not a check: which replicas Pebble's validations reached is up to the DNS answers' order.
  spread=
  for c in "${three[@]}"; do
    n=$(curl -sS --max-time 2 "http://$(ip_of "$c"):9090/metrics" 2>/dev/null |
      awk '/^lwsws_tls_handshakes_total\{result="acme_challenge"\}/ { print $2 }')
    spread="$spread ${n:-0}"
  done
  echo "     tls-alpn-01 validations answered by replicas 1 2 3:$spread"
fi
orderers=()
for c in "${three[@]}"; do if ordered_in "$c"; then orderers+=("$c"); fi; done
check "one container logged 'ACME: ordering a certificate' (got ${#orderers[@]}: ${orderers[*]:-none})" \
  test "${#orderers[@]}" = 1
dir=$state/acme/$domain
lock_gone=
for _ in $(seq 1 50); do
  if [ ! -e "$dir/cert.pem.lock" ]; then lock_gone=1; break; fi
  sleep 0.2
done
check "the lock file is gone after the order" test -n "$lock_gone"
check "no challenge answer files are left" no_files_in "$dir/acme-challenges"
check "the certificate is stored on the shared volume" test -s "$dir/cert.pem"

echo "--- the replica that ordered stopped, a fourth started on the same volume"
if [ "${#orderers[@]}" -ge 1 ]; then
  docker stop -t 10 "${orderers[0]}" >/dev/null
fi
replica 4
fourth=lwsws-replicas-4-$id
started=$(date +%s)
if fp4=$(all_serve "$fourth"); then
  ok "the fourth serves a certificate chaining to Pebble's root after $(($(date +%s) - started)) s"
  check "the fourth serves the stored certificate" test "$fp4" = "$cert_fp"
else
  bad "the fourth serves a certificate chaining to Pebble's root within 60 s"
fi
sleep 2
check "no new order at Pebble (orders $(pebble_count 'Added order'), issued $(pebble_count 'Issued certificate serial'))" \
  test "$(pebble_count 'Added order') $(pebble_count 'Issued certificate serial')" = "1 1"
check "the fourth did not order" not ordered_in "$fourth"

finish
