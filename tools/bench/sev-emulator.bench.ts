/**
 * Software secure processor benchmark: emulated SEND_UPDATE_DATA → RECEIVE_UPDATE_DATA throughput for a
 * guest of SEV_EMU_BENCH_MIB MiB (default 64) in 4 KiB and in 64 KiB packets, beside `openssl enc
 * -aes-128-ctr` + `openssl dgst -sha256 -hmac` over the same bytes. Prints figures only (no assertions).
 *
 * Run: `npm run bench:sev-emulator` (builds, then node dist/tools/bench/sev-emulator.bench.js).
 * Environment: SEV_EMU_BENCH_MIB (default 64), SEV_EMU_BENCH_RUNS (runs per figure, median; default 3).
 *
 * Per byte the emulator seals (AES-128-CTR + HMAC-SHA256) on the source and opens (HMAC + AES) on the
 * target, so the like-for-like openssl figure is the round trip: enc + dgst, then dgst + enc -d.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { decodeSevCertificate, startSevLaunch } from '@ccm/sev';
import { LabAuthority, type SevGuest, SoftwareSecureProcessor } from '@ccm/sev-emulator';

const MIB = 1 << 20;
const GUEST_MIB = Number(process.env.SEV_EMU_BENCH_MIB ?? 64);
const RUNS = Number(process.env.SEV_EMU_BENCH_RUNS ?? 3);
const PACKET_SIZES = [4 * 1024, 64 * 1024] as const;

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n: number, digits = 1): string => n.toFixed(digits);

/** A running guest on `sp` whose memory the guest itself filled with `image`. */
function runningGuest(sp: SoftwareSecureProcessor, image: Buffer): SevGuest {
  const pdh = decodeSevCertificate(sp.pdhCertExport().pdh);
  const inputs = startSevLaunch({ pdh, policy: 0x1 }).qemuInputs();
  const guest = sp.launchStart({
    policy: 0x1,
    godh: Buffer.from(inputs.dhCertBase64, 'base64'),
    session: Buffer.from(inputs.sessionBase64, 'base64'),
    memoryBytes: image.length,
  });
  sp.activate(guest);
  sp.launchMeasure(guest);
  sp.launchFinish(guest);
  guest.inGuest().memory.write(0, image);
  return guest;
}

interface TransferTimes {
  readonly sendMs: number;
  readonly receiveMs: number;
  readonly totalMs: number;
  readonly identical: boolean;
}

/** One full SEND_START … RECEIVE_FINISH of the guest's memory in `packet`-byte packets. */
function transfer(a: SoftwareSecureProcessor, g: SevGuest, b: SoftwareSecureProcessor, packet: number) {
  const { pdh, certChain } = b.pdhCertExport();
  const target = { pdh, platformCerts: certChain, amdCerts: b.amdCertChain() };
  const started = performance.now();
  const { session, policy } = a.sendStart(g, target);
  const incoming = b.receiveStart({
    policy,
    sourcePdh: a.pdhCertExport().pdh,
    session,
    memoryBytes: g.host.size,
  });
  b.activate(incoming);
  let sendMs = 0;
  let receiveMs = 0;
  for (let gpa = 0; gpa < g.host.size; gpa += packet) {
    const t0 = performance.now();
    const sealed = a.sendUpdateData(g, gpa, packet);
    const t1 = performance.now();
    b.receiveUpdateData(incoming, { ...sealed, gpa });
    receiveMs += performance.now() - t1;
    sendMs += t1 - t0;
  }
  a.sendCancel(g); // keep the source RUNNING for the next run
  b.receiveFinish(incoming);
  const totalMs = performance.now() - started;
  const identical = incoming
    .inGuest()
    .memory.read(0, g.host.size)
    .equals(g.inGuest().memory.read(0, g.host.size));
  b.deactivate(incoming);
  b.decommission(incoming);
  b.wbinvd();
  b.dfFlush();
  return { sendMs, receiveMs, totalMs, identical } satisfies TransferTimes;
}

/** Median wall time (ms) of one openssl invocation over `runs` runs. */
function opensslMs(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    const r = spawnSync('openssl', args, { stdio: 'pipe' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr.toString()}`);
    times.push(performance.now() - start);
  }
  return median(times);
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'ccm-sev-emulator-bench-'));
  try {
    const lab = await LabAuthority.create(join(root, 'lab'), { rsaBits: 2048 });
    const [a, b] = ['a', 'b'].map((n) => SoftwareSecureProcessor.create(join(root, n), { lab }));
    a.init();
    b.init();
    const image = randomBytes(GUEST_MIB * MIB);
    const guest = runningGuest(a, image);
    console.log(
      `sev-emulator: SEND_UPDATE_DATA → RECEIVE_UPDATE_DATA of a ${GUEST_MIB} MiB guest, median of ${RUNS} runs (node ${process.version})`,
    );
    const rates = new Map<number, number>();
    for (const packet of PACKET_SIZES) {
      const runs = Array.from({ length: RUNS }, () => transfer(a, guest, b, packet));
      const mibPerS = (ms: number) => GUEST_MIB / (ms / 1000);
      const total = median(runs.map((r) => r.totalMs));
      rates.set(packet, mibPerS(total));
      console.log(
        `  ${packet / 1024} KiB packets: ${fmt(mibPerS(total))} MiB/s send→receive ` +
          `(SEND_UPDATE_DATA alone ${fmt(mibPerS(median(runs.map((r) => r.sendMs))))} MiB/s, ` +
          `RECEIVE_UPDATE_DATA alone ${fmt(mibPerS(median(runs.map((r) => r.receiveMs))))} MiB/s; ` +
          `${(GUEST_MIB * MIB) / packet} packets; target memory identical: ${runs.every((r) => r.identical) ? 'yes' : 'NO'})`,
      );
    }
    if (spawnSync('openssl', ['version'], { stdio: 'pipe' }).status !== 0) {
      console.log('openssl not found: no comparison');
      return;
    }
    const version = spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout.trim();
    const plain = join(root, 'plain.bin');
    const cipher = join(root, 'cipher.bin');
    writeFileSync(plain, image);
    const key = randomBytes(16).toString('hex');
    const iv = randomBytes(16).toString('hex');
    const hmacKey = randomBytes(16).toString('hex');
    const enc = opensslMs(['enc', '-aes-128-ctr', '-K', key, '-iv', iv, '-in', plain, '-out', cipher]);
    const dgst = opensslMs(['dgst', '-sha256', '-hmac', hmacKey, cipher]);
    const dec = opensslMs(['enc', '-d', '-aes-128-ctr', '-K', key, '-iv', iv, '-in', cipher, '-out', plain]);
    const startup = opensslMs(['version']);
    const oneWay = GUEST_MIB / ((enc + dgst) / 1000);
    const roundTrip = GUEST_MIB / ((enc + 2 * dgst + dec) / 1000);
    const roundTripNet = GUEST_MIB / ((enc + 2 * dgst + dec - 4 * startup) / 1000);
    console.log(
      `${version}, same ${GUEST_MIB} MiB from a file in ${tmpdir()} (process start-up ${fmt(startup, 2)} ms):`,
    );
    console.log(
      `  enc -aes-128-ctr ${fmt(enc)} ms, dgst -sha256 -hmac ${fmt(dgst)} ms, enc -d ${fmt(dec)} ms`,
    );
    console.log(
      `  one way (enc + dgst): ${fmt(oneWay)} MiB/s; round trip (enc + dgst, dgst + enc -d): ${fmt(roundTrip)} MiB/s`,
    );
    for (const [packet, rate] of rates) {
      console.log(
        `  ratio emulator/openssl, ${packet / 1024} KiB packets: ${fmt(rate / roundTrip, 2)}× the round trip ` +
          `(${fmt(rate / roundTripNet, 2)}× net of start-up), ${fmt(rate / oneWay, 2)}× one way`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
