#!/usr/bin/env bash
# Holds open a private mount + PID namespace pivoted into the cached trixie rootfs (tools/trixie/rootfs.sh),
# where CRIU 4 runs on this host's kernel (FEASIBILITY §3.2: a plain chroot fails in mnt, CRIU 3.17 on
# the vDSO). WORKDIR is bind-mounted at /mnt inside. The namespace's init is a perl loop that ignores
# SIGCHLD, so the kernel reaps every task that ends in the namespace at once (a dumped task leaves no
# zombie holding its pid, which its restore needs again); enter it
# with `nsenter --target <init pid> --mount --pid -- CMD...` (libs/criu's nsenterRunner does). When the
# namespace is ready, `WORKDIR/.ns-ready` exists. Killing the init (SIGKILL) ends every process inside.
#   bash tools/criu/trixie-ns.sh ROOTFS WORKDIR
set -euo pipefail
R="${1:?usage: trixie-ns.sh ROOTFS WORKDIR}"
W="${2:?usage: trixie-ns.sh ROOTFS WORKDIR}"
[ -x "$R/usr/sbin/criu" ] || { echo "no criu in $R" >&2; exit 1; }
[ -d "$W" ] || { echo "no such dir $W" >&2; exit 1; }
# CRIU refuses to dump fds on mounts outside the namespace: close everything but stdio.
for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true; done
exec unshare --mount --pid --fork bash -c '
set -e
R=$1; W=$2
mount --make-rprivate /
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sys "$R/sys"
mount -t tmpfs -o mode=755 dev "$R/dev"
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n; mknod -m 666 "$R/dev/$1" c "$2" "$3"
done
set -- "$R" "$W"
mkdir -p "$R/dev/pts" "$R/dev/net"; mknod -m 666 "$R/dev/net/tun" c 10 200
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"; ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs tmp "$R/tmp"
mount --bind "$W" "$R/mnt"
mkdir -p "$R/tmp/oldroot"; cd "$R"; pivot_root . tmp/oldroot
umount -l /tmp/oldroot; rmdir /tmp/oldroot
: > /mnt/.ns-ready
exec perl -e '\''$SIG{CHLD} = "IGNORE"; sleep 3600 while 1'\'' </dev/null >/dev/null 2>&1
' trixie-ns "$R" "$W"
