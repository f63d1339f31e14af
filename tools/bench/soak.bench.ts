/**
 * Soak benchmark: migrates the tiny guest N times back and forth between two hosts (network namespaces
 * on a bridge), for every cell of contender × QEMU × dirty rate, and prints per cell: migrations,
 * failed migrations, guest losses (the destination guest stopped counting, or its kernel printed an
 * oops/BUG/panic), p50/p99 total time and downtime. Prints figures only (no assertions); a lost guest
 * is counted, then a fresh one is booted and the soak goes on.
 *
 * Run: `npm run bench:soak` (node dist/tools/bench/soak.bench.js). Environment:
 *   SOAK_RUNS (30)              migrations per cell
 *   SOAK_QEMUS (system,ccm)     `system` = qemu-system-x86_64 on PATH (Debian 12: 7.2), `ccm` = CCM's
 *                               default (trixie's QEMU 10), or a path
 *   SOAK_RATES (10,200)         dirty rates in MB/s (a 64 MiB buffer below 100 MB/s, 128 MiB from there)
 *   SOAK_CONTENDERS (bare,agent)
 *   SOAK_AUTO_CONVERGE (0)      1: migrate with QEMU's auto-converge
 *   SOAK_VERIFY_MS (15000)      how long the destination may take to show two new counters
 */
import { chooseQemuBinary, qemuVersion } from '@ccm/qmp';
import { pollUntil } from '@ccm/testing';
import { ensureGuestImage, guestFault, tinyGuestSpec, readCounters } from '../guest-image/guest-image.js';
import { bridgedHostsUnavailable, createBridgedHosts, type BridgedHosts } from '../netns/bridged-hosts.js';
import { onStopSignals } from '../run/stop-signals.js';
import { bareQmpSoak, hostAgentSoak, type SoakContender, type SoakGuest } from './soak.contenders.js';
import { summarize, printSoakTable, type Cell } from './soak.report.js';

const num = (name: string, fallback: number): number => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number`);
  return v;
};
const list = (name: string, fallback: string): string[] =>
  (process.env[name] ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

const RUNS = num('SOAK_RUNS', 30);
const VERIFY_MS = num('SOAK_VERIFY_MS', 15_000);
const AUTO_CONVERGE = process.env['SOAK_AUTO_CONVERGE'] === '1';
const HOSTS = ['sa', 'sb'] as const;

function qemuOf(name: string): { label: string; binary: string } {
  const binary =
    name === 'system' ? 'qemu-system-x86_64' : name === 'ccm' ? chooseQemuBinary(undefined, {}).binary : name;
  const v = qemuVersion(binary);
  if (!v) throw new Error(`QEMU ${name} (${binary}) does not run --version`);
  return { label: `QEMU ${v.version}`, binary };
}

function guestFor(image: { kernel: string; initrd: string }, rate: number): SoakGuest {
  const dirtyMiB = rate >= 100 ? 128 : 64;
  return tinyGuestSpec(image, { memoryMiB: 512, dirtyMiB, dirtyRateMBps: rate });
}

/** Whether the guest runs on at the destination: two counters past the source's last, and no fault. */
async function verify(srcSerial: string, dstSerial: string): Promise<string | undefined> {
  const lastOnSource = (await readCounters(srcSerial)).at(-1) ?? 0;
  try {
    await pollUntil(
      'the destination guest to count on',
      async () => ({ fault: await guestFault(dstSerial), last: (await readCounters(dstSerial)).at(-1) ?? 0 }),
      (s) => !!s.fault || s.last >= lastOnSource + 2,
      { timeoutMs: VERIFY_MS, intervalMs: 100 },
    );
  } catch {
    const last = (await readCounters(dstSerial)).at(-1);
    return `stopped counting (source at ${lastOnSource}, destination at ${last ?? 'none'})`;
  }
  const fault = await guestFault(dstSerial);
  return fault ? `kernel fault: ${fault.slice(0, 120)}` : undefined;
}

async function soakCell(
  contender: SoakContender,
  net: BridgedHosts,
  qemu: { label: string; binary: string },
  rate: number,
  guest: SoakGuest,
): Promise<Cell> {
  const cell: Cell = { contender: contender.name, qemu: qemu.label, rate, runs: [] };
  await contender.setup(net, qemu.binary);
  try {
    let at: string | undefined;
    for (let i = 1; i <= RUNS; i++) {
      if (!at) {
        const serial = await contender.boot(HOSTS[0], guest);
        await pollUntil(
          'the guest to count',
          () => readCounters(serial),
          (c) => c.length >= 2,
          {
            timeoutMs: 90_000,
            intervalMs: 100,
          },
        );
        at = HOSTS[0];
      }
      const to = at === HOSTS[0] ? HOSTS[1] : HOSTS[0];
      const limits = { downtimeLimitMs: 300, maxBandwidthBytesPerSec: 1 << 30, autoConverge: AUTO_CONVERGE };
      let line: string;
      try {
        const m = await contender.move(at, to, guest, limits);
        const lost = await verify(m.srcSerial, m.dstSerial);
        cell.runs.push({ figures: m.figures, lost });
        line = `total ${m.figures.totalTimeMs} ms, downtime ${m.figures.downtimeMs} ms${lost ? `, GUEST LOST: ${lost}` : ''}`;
        at = lost ? undefined : to;
      } catch (err) {
        cell.runs.push({ failed: (err as Error).message });
        line = `MIGRATION FAILED: ${(err as Error).message}`;
        at = undefined;
      }
      if (!at) await contender.reset();
      console.error(
        `  ${contender.name}, ${qemu.label}, ${rate} MB/s, run ${i}/${RUNS} ${HOSTS.indexOf(to) ? 'a→b' : 'b→a'}: ${line}`,
      );
    }
  } finally {
    await contender.teardown();
  }
  return cell;
}

async function main(): Promise<void> {
  const why = bridgedHostsUnavailable();
  if (why) throw new Error(`the soak needs two network namespaces: ${why}`);
  const qemus = list('SOAK_QEMUS', 'system,ccm').map(qemuOf);
  const rates = list('SOAK_RATES', '10,200').map(Number);
  const wanted = list('SOAK_CONTENDERS', 'bare,agent');
  const contenders = [
    ...(wanted.includes('bare') ? [bareQmpSoak()] : []),
    ...(wanted.includes('agent') ? [hostAgentSoak()] : []),
  ];
  const image = await ensureGuestImage({ log: (m) => console.error(m) });
  const net = createBridgedHosts(HOSTS);
  let current: SoakContender | undefined;
  const stop = onStopSignals('bench:soak', async () => {
    try {
      await current?.teardown();
    } finally {
      net.destroy();
    }
  });
  const cells: Cell[] = [];
  try {
    console.error(
      `soak: ${RUNS} migrations per cell; ${qemus.map((q) => `${q.label} (${q.binary})`).join(', ')}; ` +
        `dirty ${rates.join(', ')} MB/s; auto-converge ${AUTO_CONVERGE ? 'on' : 'off'}; hosts ${Object.values(
          net.hosts,
        )
          .map((h) => `${h.ns} ${h.addr}`)
          .join(', ')}`,
    );
    for (const qemu of qemus) {
      for (const rate of rates) {
        for (const c of contenders) {
          current = c;
          cells.push(await soakCell(c, net, qemu, rate, guestFor(image, rate)));
          current = undefined;
        }
      }
    }
  } finally {
    net.destroy();
    stop.dispose();
  }
  printSoakTable(cells.map(summarize));
}

await main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:soak failed: ${err instanceof Error ? err.message : String(err)}`);
    // Everything was stopped on the way out; exit even if a stray handle is left.
    process.exit(1);
  },
);
