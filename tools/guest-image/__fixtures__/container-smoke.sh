# Run inside the container guest (after container-lib.sh, passed as fw_cfg opt/ccm/run): Node and CRIU
# versions, `criu check`, then a runc container checkpointed and restored in this guest.
say node "$(node --version)"
if [ -n "$(ip -4 -o addr show dev eth0 2>/dev/null)" ]; then
  say eth0 "$(ip -4 -br addr show dev eth0 | tr -s ' ')"
  gw=$(ip route show default | cut -d' ' -f3)
  r=failed
  for i in 1 2 3; do busybox ping -c 1 -W 5 "$gw" >/dev/null 2>&1 && r=ok && break; done
  say ping "$gw $r"
fi
say criu-version "$(criu --version | head -n1)"
T=$(now); out=$(criu check 2>&1); say criu-check-ms "$(ms "$T")"
say criu-check "$(echo "$out" | tail -n1)"

mkbundle
runctr
say counting "$(counter_past 5)"

T=$(now); runc checkpoint --image-path /tmp/ck --work-path /tmp/ckw ctr1; rc=$?
say checkpoint "rc=$rc ms=$(ms "$T") kib=$(du -sk /tmp/ck | cut -f1)"
[ $rc -eq 0 ] || say checkpoint-error "$(grep -h Error /tmp/ckw/*.log | head -n 3)"
at=$(cnt); sleep 1
say after-checkpoint "at=$at later=$(cnt) state=$(runc state ctr1 2>&1 | grep -o '"status": "[a-z]*"' || echo gone)"

restorectr /tmp/ck
say restored "at=$at now=$(counter_past $((at + 5)))"
runc kill ctr1 KILL
say killed "rc=$?"
# The run's exit status says the script ran to its end; each step's own status is in its line.
exit 0
