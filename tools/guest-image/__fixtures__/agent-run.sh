#!/bin/sh
# Run inside the container guest (fw_cfg opt/ccm/run): mounts the app disk (/dev/vdb) and starts the
# guest-agent from it with the environment the disk's ccm.env holds (shared by every guest), then its
# env/<host name>.env if there is one (one disk for several guests), then what the host-agent passes
# this VM alone in the fw_cfg blob opt/ccm/vm (its VM id, eth0's address and route, its stream
# address: CCM_GUEST_NET). With that blob, one app disk and one measured command line serve every VM.
mkdir -p /run/ccm/app
mount -t ext4 -o ro /dev/vdb /run/ccm/app || { echo "CCM-AGENT cannot mount the app disk"; exit 1; }
set -a
[ -f /run/ccm/app/ccm.env ] && . /run/ccm/app/ccm.env
[ -f "/run/ccm/app/env/$(hostname).env" ] && . "/run/ccm/app/env/$(hostname).env"
VM_BLOB=/sys/firmware/qemu_fw_cfg/by_name/opt/ccm/vm/raw
if [ -r "$VM_BLOB" ]; then
  cat "$VM_BLOB" > /run/ccm/vm.env
  . /run/ccm/vm.env
fi
set +a
if [ -n "$CCM_GUEST_ADDRESS" ] && ! ip -4 addr show dev eth0 2>/dev/null | grep -q inet; then
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  ip addr add "$CCM_GUEST_ADDRESS" dev eth0 && ip link set eth0 up ||
    echo "CCM-AGENT cannot configure eth0 with $CCM_GUEST_ADDRESS"
  [ -n "$CCM_GUEST_GATEWAY" ] && { ip route add default via "$CCM_GUEST_GATEWAY" ||
    echo "CCM-AGENT cannot add the route via $CCM_GUEST_GATEWAY"; }
  [ -n "$CCM_VM_ID" ] && hostname "$CCM_VM_ID"
fi
echo "CCM-AGENT starting node $(node --version) vm=$CCM_VM_ID nats=$CCM_NATS_URL thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null) ip=$(ip -4 -o addr show dev eth0 2>/dev/null | tr -s ' ' | cut -d' ' -f4)"
exec node /run/ccm/app/dist/apps/guest-agent/src/main.js
