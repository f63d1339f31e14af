#!/bin/sh
# Run inside the container guest (fw_cfg opt/ccm/run): mounts the app disk (/dev/vdb) and starts the
# guest-agent from it with the environment the disk's ccm.env holds.
mkdir -p /run/ccm/app
mount -t ext4 -o ro /dev/vdb /run/ccm/app || { echo "CCM-AGENT cannot mount the app disk"; exit 1; }
set -a
. /run/ccm/app/ccm.env
set +a
echo "CCM-AGENT starting node $(node --version) vm=$CCM_VM_ID nats=$CCM_NATS_URL"
exec node /run/ccm/app/dist/apps/guest-agent/src/main.js
