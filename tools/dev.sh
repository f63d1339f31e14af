#!/usr/bin/env bash
# CCM's single entry point on a fresh Debian 12 machine: installs what is missing (Debian packages from
# tools/system-packages.txt, npm dependencies from package-lock.json), builds, then runs one job:
#   bash tools/dev.sh demo   the demo on the embedded stack: a container between two confidential VMs
#                            (QEMU guests where the machine can, else the sim drivers; --sim forces them)
#   bash tools/dev.sh demo vm   a QEMU VM live-migrated between two hosts through the coordinator
#   bash tools/dev.sh test   typecheck, lint and the whole test suite
#   bash tools/dev.sh stack  NATS, Postgres, every service, host-a and host-b with the container flow ([--sim]), until Ctrl-C
#   bash tools/dev.sh setup  only the installs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[ccm] %s\n' "$*" >&2; }

install_system_packages() {
  local wanted=() missing=()
  mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' tools/system-packages.txt)
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    log "missing system packages: ${missing[*]} (install them with your package manager)"; return 1
  fi
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_node_modules() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing npm dependencies (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

setup() {
  command -v node >/dev/null || { log "Node.js 20.19+ is required (Debian: apt-get install nodejs npm)"; exit 1; }
  install_system_packages
  install_node_modules
  bash tools/trixie/rootfs.sh >/dev/null
  node tools/build.mjs
}

job="${1:-}"; shift || true
case "$job" in
  setup) setup ;;
  test)
    setup
    export NX_DAEMON=false
    npm run --silent typecheck
    npm run --silent lint
    npx vitest run "$@"
    ;;
  stack)
    setup
    node dist/tools/stack/main.js "$@"
    ;;
  demo)
    setup
    node dist/tools/demo/main.js "$@"
    ;;
  *) echo "usage: bash tools/dev.sh demo|test|stack|setup" >&2; exit 2 ;;
esac
