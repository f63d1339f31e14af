#!/bin/sh
# Run inside the container guest (passed as fw_cfg opt/ccm/run): Node and CRIU versions, `criu check`,
# then a runc container (static busybox rootfs, a counter loop) checkpointed and restored in this guest.
# Every result is one "CCM-SMOKE <name> <value>" line on the serial console.
say() { echo "CCM-SMOKE $*"; }
now() { date +%s%N; }
ms() { echo $(( ($(now) - $1) / 1000000 )); }
# (the loop rewrites the file: a read can find it empty)
cnt() { v=$(cat /tmp/bundle/rootfs/tmp/cnt 2>/dev/null); echo "${v:-0}"; }
# waits (up to 20 s) until the counter passes $1
counter_past() { i=0; while [ "$(cnt)" -le "$1" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done; cnt; }

say node "$(node --version)"
if [ -n "$(ip -4 -o addr show dev eth0 2>/dev/null)" ]; then
  say eth0 "$(ip -4 -br addr show dev eth0 | tr -s ' ')"
  gw=$(ip route show default | cut -d' ' -f3)
  busybox ping -c 1 -W 5 "$gw" >/dev/null 2>&1 && say ping "$gw ok" || say ping "$gw failed"
fi
say criu-version "$(criu --version | head -n1)"
T=$(now); out=$(criu check 2>&1); say criu-check-ms "$(ms "$T")"
say criu-check "$(echo "$out" | tail -n1)"

B=/tmp/bundle
mkdir -p $B/rootfs/bin $B/rootfs/proc $B/rootfs/dev $B/rootfs/sys $B/rootfs/tmp
cp /bin/busybox $B/rootfs/bin/busybox
for a in sh sleep echo cat; do ln -s busybox $B/rootfs/bin/$a; done
cd $B && runc spec || say bundle-failed
node -e '
const fs = require("fs"); const p = "/tmp/bundle/config.json"; const c = JSON.parse(fs.readFileSync(p));
c.process.terminal = false;
c.process.args = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/cnt; sleep 0.1; done"];
c.root.readonly = false;
fs.writeFileSync(p, JSON.stringify(c));'

# The container's stdio must not be a file outside its mounts, or CRIU cannot dump it: /dev/null.
T=$(now); runc --log /tmp/runc-run.log run -d ctr1 </dev/null >/dev/null 2>&1; rc=$?
say run "rc=$rc ms=$(ms "$T")"
[ $rc -eq 0 ] || say run-error "$(tail -n 2 /tmp/runc-run.log)"
say counting "$(counter_past 5)"

T=$(now); runc checkpoint --image-path /tmp/ck --work-path /tmp/ckw ctr1; rc=$?
say checkpoint "rc=$rc ms=$(ms "$T") kib=$(du -sk /tmp/ck | cut -f1)"
[ $rc -eq 0 ] || say checkpoint-error "$(grep -h Error /tmp/ckw/*.log | head -n 3)"
at=$(cnt); sleep 1
say after-checkpoint "at=$at later=$(cnt) state=$(runc state ctr1 2>&1 | grep -o '"status": "[a-z]*"' || echo gone)"

T=$(now); runc --log /tmp/runc-restore.log restore -d --image-path /tmp/ck --work-path /tmp/rsw ctr1 </dev/null >/dev/null 2>&1; rc=$?
say restore "rc=$rc ms=$(ms "$T")"
[ $rc -eq 0 ] || say restore-error "$(grep -h Error /tmp/rsw/*.log | head -n 3) $(tail -n 2 /tmp/runc-restore.log)"
say restored "at=$at now=$(counter_past $((at + 5)))"
runc kill ctr1 KILL
