# Helpers for the scripts run inside the container guest (prepended to them by the int-specs).
# Every result is one "CCM-SMOKE <name> <value>" line on the serial console.
say() { echo "CCM-SMOKE $*"; }
now() { date +%s%N; }
ms() { echo $(( ($(now) - $1) / 1000000 )); }
# The container's counter (the loop rewrites the file: a read can find it empty).
cnt() { v=$(cat /tmp/bundle/rootfs/tmp/cnt 2>/dev/null); echo "${v:-0}"; }
# Waits (up to 20 s) until the counter passes $1, then prints it.
counter_past() { i=0; while [ "$(cnt)" -le "$1" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done; cnt; }
# An OCI bundle at /tmp/bundle: the guest's static busybox as rootfs, a loop counting in /tmp/cnt.
mkbundle() {
  B=/tmp/bundle
  mkdir -p $B/rootfs/bin $B/rootfs/proc $B/rootfs/dev $B/rootfs/sys $B/rootfs/tmp
  cp /bin/busybox $B/rootfs/bin/busybox
  for a in sh sleep echo cat; do ln -s busybox $B/rootfs/bin/$a; done
  (cd $B && runc spec) || say bundle-failed
  node -e '
const fs = require("fs"); const p = "/tmp/bundle/config.json"; const c = JSON.parse(fs.readFileSync(p));
c.process.terminal = false;
c.process.args = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/cnt; sleep 0.1; done"];
c.root.readonly = false;
fs.writeFileSync(p, JSON.stringify(c));'
}
# Starts the bundle as ctr1. Its stdio must not be a file outside its mounts (CRIU could not dump it).
runctr() {
  T=$(now); (cd /tmp/bundle && runc --log /tmp/runc-run.log run -d ctr1 </dev/null >/dev/null 2>&1); rc=$?
  say run "rc=$rc ms=$(ms "$T")"
  [ $rc -eq 0 ] || say run-error "$(tail -n 2 /tmp/runc-run.log)"
}
# Restores ctr1 from the images in $1.
restorectr() {
  T=$(now)
  (cd /tmp/bundle && runc --log /tmp/runc-restore.log restore -d --image-path "$1" --work-path /tmp/rsw ctr1 </dev/null >/dev/null 2>&1)
  rc=$?
  say restore "rc=$rc ms=$(ms "$T")"
  [ $rc -eq 0 ] || say restore-error "$(grep -h Error /tmp/rsw/*.log | head -n 3) $(tail -n 2 /tmp/runc-restore.log)"
}
