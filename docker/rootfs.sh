#!/usr/bin/env bash
# Lays out the root file system of the lwsws image in DEST around BINARY: the binary, the shared
# libraries it links (ldd, the dynamic loader included), CA certificates, /etc/passwd and
# /etc/group with the non-root user 65532, a /tmp, the demo config at /etc/lwsws and the demo site
# at /usr/share/lwsws-demo. docker/Dockerfile runs it in its build stage and docker/build-local.sh
# on the host, so both images hold the same files.
#
#   docker/rootfs.sh BINARY DEST
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: docker/rootfs.sh BINARY DEST}
root=${2:?usage: docker/rootfs.sh BINARY DEST}
[ -x "$bin" ] || { echo "rootfs: $bin is not an executable file" >&2; exit 1; }
command -v ldd >/dev/null 2>&1 || { echo "rootfs: ldd is missing" >&2; exit 1; }
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "rootfs: $certs is missing (apt-get install ca-certificates)" >&2; exit 1; }

umask 022
mkdir -p "$root"/{usr/local/bin,etc/ssl/certs,etc/lwsws/conf.d,usr/share,tmp,var/lib/lwsws}
chmod 1777 "$root/tmp"
# The state directory (ACME files, the replicas' locks and answers): writable by the non-root
# user whoever builds the image (a COPY from the build context makes everything root's), and a
# fresh named volume mounted there takes this mode, so replicas can share one without a chown.
# What lwsws writes inside is 0600 in 0700 directories.
chmod 1777 "$root/var/lib/lwsws"
install -m 0755 "$bin" "$root/usr/local/bin/lwsws"
# The image carries the binary without its symbol table (about 5 MB): a panic's backtrace in
# the container shows addresses, which `addr2line -e target/release/lwsws` turns into names
# with the unstripped binary it was built from. The binary on the host keeps its symbols.
if command -v strip >/dev/null 2>&1; then
  strip --strip-unneeded "$root/usr/local/bin/lwsws"
else
  echo "rootfs: strip (binutils) is missing; the image keeps the symbol table" >&2
fi

# Every library ldd resolves, at the path the binary will look for it. Lines look like
# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or, for the loader,
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file. cp -L copies the file a
# symlink points to under the symlink's name, which is the name the loader asks for.
libs=()
if ldd_out=$(ldd "$bin" 2>&1); then
  while read -r lib; do libs+=("$lib"); done < <(
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)
elif ! grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out"; then
  echo "rootfs: ldd failed: $ldd_out" >&2
  exit 1
fi
for lib in "${libs[@]}"; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cp -L "$certs" "$root$certs"
chmod 0644 "$root$certs"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
# glibc reads this for name lookups (proxy upstreams by host name): files, then DNS.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"

cp "$repo/conf/conf" "$root/etc/lwsws/conf"
cp -R "$repo/conf/conf.d/." "$root/etc/lwsws/conf.d/"
cp -R "$repo/conf/share/lwsws-demo" "$root/usr/share/lwsws-demo"
chmod -R u+rwX,go+rX,go-w "$root/etc/lwsws" "$root/usr/share/lwsws-demo"

echo "rootfs: ${#libs[@]} shared libraries from ldd: ${libs[*]:-none}"
