/**
 * The tiny test guest's own sources, kept as strings so the builder is one self-contained module and
 * the cache key can hash exactly what goes into the image.
 */

/** Console line the init script prints once the guest's userspace is up. */
export const GUEST_READY_MARKER = 'CCM-GUEST-READY';
/** Heartbeat line the workload prints every second: `COUNTER <n> dirtiedMiB=<m>`. */
export const COUNTER_PATTERN = /^COUNTER (\d+)\b/gm;

/**
 * ccm-workload: keeps a RAM buffer dirty at a steady rate and prints a heartbeat, so a migration test
 * can see the guest keep running (the counter continues on the destination) while pages change.
 */
export const WORKLOAD_C = String.raw`/* ccm-workload BUFFER_MIB RATE_MB_PER_S
 * Dirties RATE MB/s of BUFFER_MIB (one byte in each 4 KiB page, round robin) in 20 slices a second and
 * prints "COUNTER n" once a second on stdout. RATE 0 only prints the heartbeat. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE_BYTES 4096UL
#define SLICES_PER_SEC 20
#define NS_PER_SEC 1000000000L

static void advance(struct timespec *t, long ns) {
  t->tv_nsec += ns;
  while (t->tv_nsec >= NS_PER_SEC) {
    t->tv_nsec -= NS_PER_SEC;
    t->tv_sec++;
  }
}

int main(int argc, char **argv) {
  unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
  double rate = argc > 2 ? strtod(argv[2], NULL) : 10;
  if (mib == 0) mib = 1;
  if (rate < 0) rate = 0;
  size_t bytes = (size_t)mib << 20, pages = bytes / PAGE_BYTES;
  unsigned char *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) {
    perror("ccm-workload: mmap");
    return 1;
  }
  memset(buf, 0x5a, bytes); /* non-zero pages: the migration has to copy them */
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("CCM-WORKLOAD buffer=%luMiB rate=%gMB/s\n", mib, rate);

  double per_slice = rate * (1 << 20) / PAGE_BYTES / SLICES_PER_SEC, owed = 0;
  unsigned long long touched = 0, beats = 0;
  size_t cursor = 0;
  int slice = 0;
  struct timespec due, now;
  clock_gettime(CLOCK_MONOTONIC, &due);
  for (;;) {
    for (owed += per_slice; owed >= 1; owed -= 1) {
      buf[cursor * PAGE_BYTES + (touched & (PAGE_BYTES - 1))]++;
      cursor = (cursor + 1) % pages;
      touched++;
    }
    if (++slice == SLICES_PER_SEC) {
      slice = 0;
      printf("COUNTER %llu dirtiedMiB=%llu\n", ++beats, touched * PAGE_BYTES >> 20);
    }
    advance(&due, NS_PER_SEC / SLICES_PER_SEC);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > due.tv_sec + 1) due = now; /* resumed after a long stop: no burst to catch up */
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) != 0) {
    }
  }
}
`;

/**
 * /init of the initramfs: mounts the pseudo filesystems, reads `ccm.dirty_mb` and `ccm.dirty_rate`
 * from the kernel command line, prints the ready marker with the guest's uptime and starts the
 * workload. PID 1 must never exit, so it then sleeps forever. (No "$" followed by "{" in here: this is
 * a template literal.)
 */
export const INIT_SCRIPT = String.raw`#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mb=64
rate=10
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ccm.dirty_mb=*) mb=$(echo "$arg" | cut -d= -f2) ;;
    ccm.dirty_rate=*) rate=$(echo "$arg" | cut -d= -f2) ;;
  esac
done
echo "CCM-GUEST-READY uptime=$(cut -d' ' -f1 /proc/uptime) dirty_mb=$mb dirty_rate=$rate"
/bin/ccm-workload "$mb" "$rate" &
while :; do sleep 3600; done
`;

/**
 * What a guest kernel prints when it is corrupted or dying (a lost guest, whatever its counter did):
 * an oops, a BUG, a general protection fault, a panic.
 */
export const GUEST_FAULT_PATTERN =
  /^.*(Kernel panic|Oops|BUG: |general protection fault|stack-protector|Fatal exception).*$/m;
