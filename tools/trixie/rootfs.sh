#!/usr/bin/env bash
# Builds (once) and prints the path of a Debian trixie minbase rootfs holding the host tools that
# Debian 12 ships too old or broken for CCM (ARCHITECTURE §10):
#   - nats-server 2.10+: per-filter consumer permissions, TERM with a reason honoured (2.9 lacks both);
#   - qemu-system-x86 10: QEMU 7.2 corrupts TCG guests during live migration under heavy dirtying;
#   - criu 4: CRIU 3.17 fails on this kernel's vDSO (it runs inside a pivoted mount namespace, FEASIBILITY §3.2).
# The rootfs is cached outside the repository, keyed by a hash of its package list, in
# ${CCM_CACHE_DIR:-~/.cache/ccm}/trixie-<hash>; a concurrent caller waits on a lock and reuses it.
# Packages come from the Debian mirror the host's own apt sources name; nothing is installed on the host
# except debootstrap (tools/system-packages.txt).
#   bash tools/trixie/rootfs.sh          # prints the rootfs path (builds it first when missing)
#   bash tools/trixie/rootfs.sh --check  # exit 0 and print the path only if it is already built
set -euo pipefail

PACKAGES=(nats-server qemu-system-x86 seabios criu)

cache="${CCM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ccm}"
key="$(printf 'trixie minbase %s\n' "${PACKAGES[*]}" | sha256sum | cut -c1-12)"
root="$cache/trixie-$key"

log() { printf '[ccm trixie] %s\n' "$*" >&2; }

if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi
if [ "${1:-}" = "--check" ]; then exit 1; fi

# The Debian archive the host already uses (deb822 sources first, then the one-line format).
mirror() {
  local uri
  uri=$(awk '/^URIs:/{u=$2} /^Suites:/{ for (i=2;i<=NF;i++) if ($i !~ /security|updates|backports/) { print u; exit } }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
  fi
  [ -n "$uri" ] || { log "no Debian mirror found in the host's apt sources"; return 1; }
  echo "$uri"
}

command -v debootstrap >/dev/null || { log "debootstrap is missing (bash tools/dev.sh setup installs it)"; exit 1; }
[ "$(id -u)" -eq 0 ] || { log "building the trixie rootfs needs root (debootstrap)"; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/trixie.lock"
flock 9
if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi

url="$(mirror)"
tmp="$root.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
include=$(IFS=,; echo "${PACKAGES[*]}")
log "building a trixie rootfs with ${PACKAGES[*]} in $root (about a minute, once)"
start=$(date +%s)
if ! debootstrap --variant=minbase --include="$include" trixie "$tmp" "$url" >"$cache/trixie-debootstrap.log" 2>&1; then
  log "debootstrap failed; the last lines of $cache/trixie-debootstrap.log:"
  tail -n 15 "$cache/trixie-debootstrap.log" >&2
  exit 1
fi
rm -rf "$tmp/var/cache/apt/archives"/*.deb "$tmp/usr/share/doc" "$tmp/usr/share/man" "$tmp/usr/share/locale"
{
  printf 'built %s from %s\n' "$(date -u +%FT%TZ)" "$url"
  chroot "$tmp" dpkg-query -W -f='${Package} ${Version}\n' "${PACKAGES[@]}"
} >"$tmp/.complete"
mv "$tmp" "$root"
trap - EXIT
log "trixie rootfs ready in $(( $(date +%s) - start )) s: $(tr '\n' ' ' < "$root/.complete")"
echo "$root"
