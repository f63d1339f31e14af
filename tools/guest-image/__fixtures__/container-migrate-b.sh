# Guest B (after container-lib.sh; CCM_PEER set above it): fetches guest A's images over HTTP and
# restores the container here.
mkbundle
T=$(now); i=0
until busybox wget -q -O /tmp/ck.tar "http://$CCM_PEER:8080/ck.tar" 2>/dev/null; do
  i=$((i + 1)); [ $i -gt 600 ] && break; sleep 0.2
done
say fetched "ms=$(ms "$T") kib=$(du -k /tmp/ck.tar | cut -f1)"
mkdir -p /tmp/ck && tar -C /tmp/ck -xf /tmp/ck.tar
at=$(cat /tmp/ck/cnt); cp /tmp/ck/cnt /tmp/bundle/rootfs/tmp/cnt
restorectr /tmp/ck/ck
say restored "at=$at now=$(counter_past $((at + 5)))"
