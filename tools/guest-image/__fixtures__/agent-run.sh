#!/bin/sh
# Run inside the container guest (fw_cfg opt/ccm/run): mounts the app disk (/dev/vdb) and starts the
# guest-agent from it with the environment the disk's env/<host name>.env holds (one disk for several
# guests), else its ccm.env.
mkdir -p /run/ccm/app
mount -t ext4 -o ro /dev/vdb /run/ccm/app || { echo "CCM-AGENT cannot mount the app disk"; exit 1; }
ENV=/run/ccm/app/ccm.env
[ -f "/run/ccm/app/env/$(hostname).env" ] && ENV="/run/ccm/app/env/$(hostname).env"
set -a
. "$ENV"
set +a
echo "CCM-AGENT starting node $(node --version) vm=$CCM_VM_ID nats=$CCM_NATS_URL thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
exec node /run/ccm/app/dist/apps/guest-agent/src/main.js
