/**
 * What the container guest image is made of, kept as data and strings so the cache key hashes exactly
 * what goes into the image (container-image.ts builds it). The scripts are template literals: their
 * only "$" + "{" are the interpolations of CCM's own constants.
 */

/** The Debian suite of the guest's userspace: trixie has nodejs 20.19, criu 4.1 and runc 1.1. */
export const CONTAINER_SUITE = 'trixie';

/**
 * Installed by debootstrap (minbase) with their dependencies. busybox-static is the guest's busybox
 * (init, and the static binary a container bundle's rootfs is made of).
 */
export const CONTAINER_PACKAGES = [
  'nodejs',
  'criu',
  'runc',
  'iproute2',
  'wireguard-tools',
  'nftables',
  'kmod',
  'procps',
  'busybox-static',
  // CRIU locks a container's network with iptables-restore/ip6tables-restore (runc passes no
  // --network-lock): trixie's iptables speaks nftables, through the modules below.
  'iptables',
] as const;

/** Loaded by the tiny initramfs (with their dependencies) so it can mount the root disk. */
export const INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4'] as const;

/**
 * Loaded by the guest init at boot. `criu check` fails without each of the netfilter, tun and sock_diag
 * modules (FEASIBILITY §3.3); qemu_fw_cfg exposes the command channel; virtio_net the network.
 */
export const BOOT_MODULES = [
  'virtio_net',
  'qemu_fw_cfg',
  'tun',
  'nf_tables',
  'nft_compat',
  'nft_ct',
  'nf_conntrack_netlink',
  'unix_diag',
  'inet_diag',
  'tcp_diag',
  'udp_diag',
  'raw_diag',
  'netlink_diag',
  'af_packet_diag',
] as const;

/** Shipped in the root's /lib/modules besides the boot set, for modprobe on demand. */
export const EXTRA_MODULES = [
  'crc32c-intel',
  'wireguard',
  'veth',
  'bridge',
  'br_netfilter',
  'overlay',
  'autofs4',
  'nf_nat',
  'nft_chain_nat',
  'nft_nat',
  'nft_masq',
  'nft_reject_inet',
  'nft_fib_inet',
  'sch_netem',
  'ip_tables',
  'ip6_tables',
  'iptable_filter',
  'ip6table_filter',
  'xt_mark',
  'xt_conntrack',
  'xt_tcpudp',
] as const;

/** fw_cfg blob the guest init runs when the command line says `ccm.run=fw_cfg` (or names nothing). */
export const FW_CFG_RUN = 'opt/ccm/run';
/** Where the guest init keeps the secret table of its attested launch (tmpfs, root-only). */
export const GUEST_SECRET_DIR = '/run/ccm/sev';
export const GUEST_SECRET_TABLE = `${GUEST_SECRET_DIR}/secret-table`;
/** The first 16 bytes of an EFI secret table (its header GUID 1e74f542-71dd-4d66-963e-ef4287ff173b), hex. */
export const EFI_SECRET_TABLE_HEADER = '42f5741edd71664d963eef4287ff173b';

/** Line the guest prints when the run command ends: `CCM-RUN-DONE rc=<n>`. */
export const RUN_DONE_PATTERN = /^CCM-RUN-DONE rc=(\d+)/m;
/** Line the initramfs prints when it cannot mount the root disk. */
export const BOOT_FAILED_MARKER = 'CCM-BOOT-FAILED';

/**
 * /init of the tiny initramfs: loads the modules listed in /etc/ccm-modules (dependencies first),
 * mounts the root disk (`ccm.root=`, default /dev/vda) read-only and switch_roots into busybox init.
 */
export const INITRAMFS_INIT = String.raw`#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/ccm-modules); do insmod "/lib/modules/$m" || echo "ccm-initramfs: insmod $m failed"; done
root=/dev/vda
for arg in $(cat /proc/cmdline); do
  case "$arg" in ccm.root=*) root=$(echo "$arg" | cut -d= -f2) ;; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 200 ]; do usleep 25000; i=$((i + 1)); done
if ! mount -t ext4 -o ro "$root" /newroot; then
  echo "CCM-BOOT-FAILED cannot mount $root read-only as ext4"
  poweroff -f
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/busybox init
`;

/** busybox init's table: run the CCM init once, then stay PID 1 (reaping orphans, as runc needs). */
export const INITTAB = `::sysinit:/usr/lib/ccm/ccm-init
::ctrlaltdel:/bin/busybox poweroff -f
`;

/**
 * /usr/lib/ccm/ccm-init: mounts, modules, networking from the kernel command line, the ready marker,
 * then the run command in the background. Kernel command line:
 *   ccm.ip=ADDR/PREFIX   address of the first virtio-net interface (eth0); ccm.gw=ADDR its default route
 *   ccm.hostname=NAME
 *   ccm.run=PATH|fw_cfg  what to run once ready: a path in the image, or the script QEMU passes as
 *                        `-fw_cfg name=opt/ccm/run,file=…` (also run when ccm.run is absent)
 *   ccm.poweroff=1       power off when the run command ends
 *   ccm.secret=0xGPA     the page the attested launch's secret table was placed at (the command line
 *                        also reserves it, memmap=4K$0xGPA, so the kernel leaves it alone and /dev/mem
 *                        may read it): when it holds an EFI secret table, it is copied to
 *                        ${GUEST_SECRET_TABLE} (root-only tmpfs) and the run command gets
 *                        CCM_GUEST_SEV=sev and CCM_GUEST_SECRET_TABLE; otherwise nothing changes
 */
export function guestInitScript(bootModules: readonly string[]): string {
  return String.raw`#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run/ccm
ip link set lo up
modprobe -a ${bootModules.join(' ')} || echo "ccm-init: some modules did not load"
ip= gw= name=ccm-guest run= off= secret=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ccm.ip=*) ip=$(echo "$arg" | cut -d= -f2) ;;
    ccm.gw=*) gw=$(echo "$arg" | cut -d= -f2) ;;
    ccm.hostname=*) name=$(echo "$arg" | cut -d= -f2) ;;
    ccm.run=*) run=$(echo "$arg" | cut -d= -f2-) ;;
    ccm.poweroff=*) off=$(echo "$arg" | cut -d= -f2) ;;
    ccm.secret=*) secret=$(echo "$arg" | cut -d= -f2) ;;
  esac
done
if [ -n "$secret" ]; then
  mkdir -p -m 700 ${GUEST_SECRET_DIR}
  (umask 077; dd if=/dev/mem of=${GUEST_SECRET_TABLE} bs=4096 skip=$((secret / 4096)) count=1 status=none) ||
    echo "ccm-init: cannot read the secret page at $secret from /dev/mem"
  if [ "$(head -c 16 ${GUEST_SECRET_TABLE} 2>/dev/null | od -An -tx1 | tr -d ' \n')" = ${EFI_SECRET_TABLE_HEADER} ]; then
    chmod 400 ${GUEST_SECRET_TABLE}
    export CCM_GUEST_SEV=sev CCM_GUEST_SECRET_TABLE=${GUEST_SECRET_TABLE}
    echo "ccm-init: secret table at $secret"
  else
    rm -f ${GUEST_SECRET_TABLE}
    echo "ccm-init: no secret table at $secret"
  fi
fi
hostname "$name"
if [ -n "$ip" ]; then
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  ip addr add "$ip" dev eth0 && ip link set eth0 up || echo "ccm-init: cannot configure eth0 with $ip"
  [ -n "$gw" ] && { ip route add default via "$gw" || echo "ccm-init: cannot add the route via $gw"; }
fi
blob=/sys/firmware/qemu_fw_cfg/by_name/${FW_CFG_RUN}/raw
if [ "$run" = fw_cfg ] || { [ -z "$run" ] && [ -r "$blob" ]; }; then
  if [ -r "$blob" ]; then cat "$blob" > /run/ccm/run; chmod 700 /run/ccm/run; run=/run/ccm/run
  else echo "ccm-init: ccm.run=fw_cfg but QEMU passed no ${FW_CFG_RUN}"; run=; fi
fi
echo "CCM-GUEST-READY uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r) host=$name ip=$ip"
if [ -n "$run" ]; then
  (
    setsid "$run" </dev/null
    echo "CCM-RUN-DONE rc=$?"
    if [ "$off" = 1 ]; then sync; busybox poweroff -f; fi
  ) >/dev/console 2>&1 &
fi
`;
}
