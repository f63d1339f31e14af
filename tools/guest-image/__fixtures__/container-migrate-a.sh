# Guest A (after container-lib.sh): runs the container, checkpoints it and serves the images over HTTP
# (busybox httpd on eth0) for guest B.
# Container pids from 5000 on: CRIU restores the same pids, and guest B's own stay far below.
echo 4999 > /proc/sys/kernel/ns_last_pid
mkbundle
runctr
say counting "$(counter_past 5)"
T=$(now); runc checkpoint --image-path /tmp/xfer/ck --work-path /tmp/ckw ctr1; rc=$?
say checkpoint "rc=$rc ms=$(ms "$T") kib=$(du -sk /tmp/xfer/ck | cut -f1)"
[ $rc -eq 0 ] || say checkpoint-error "$(grep -h Error /tmp/ckw/*.log | head -n 3)"
at=$(cnt); sleep 1
say after-checkpoint "at=$at later=$(cnt)"
# The counter file lives in the bundle's rootfs, which is not in the images: it travels beside them.
cp /tmp/bundle/rootfs/tmp/cnt /tmp/xfer/cnt
mkdir -p /tmp/www && tar -C /tmp/xfer -cf /tmp/www/ck.tar .
busybox httpd -p 8080 -h /tmp/www && say serving "$(du -k /tmp/www/ck.tar | cut -f1) KiB"
