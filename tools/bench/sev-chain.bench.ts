/**
 * SEV benchmark: chain verifications per second and launch measurement per MiB of guest image, each beside
 * the same work done by `openssl` commands on the same inputs. Prints figures only (no assertions).
 *
 * Run after the build: `npm run build && npm run bench:sev` (node dist/tools/bench/sev-chain.bench.js).
 * Environment: SEV_BENCH_SECONDS (per figure, default 2), SEV_BENCH_IMAGE_MIB (default 64).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  amdCertificatePublicKey,
  computeSevLaunchDigest,
  computeSevLaunchMeasure,
  decodeAmdCertificate,
  decodeSevCertificate,
  encodeAmdCertificateBody,
  encodeSevCertificateBody,
  sevPublicKeyToKeyObject,
  verifyAmdCertificateSignature,
  verifySevChain,
  type SevCertificate,
  type SevCertificateChain,
  type SevPublicKey,
} from '@ccm/sev';

const SECONDS = Number(process.env.SEV_BENCH_SECONDS ?? 2);
const IMAGE_MIB = Number(process.env.SEV_BENCH_IMAGE_MIB ?? 64);

function repoRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'nx.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root (nx.json) not found');
    dir = up;
  }
  return dir;
}
const VECTORS = resolve(repoRoot(), '..', 'shared', 'vectors');
const vector = (path: string): Buffer => readFileSync(join(VECTORS, path));

/** Runs `fn` repeatedly for about `seconds`; returns operations per second. */
function rate(fn: () => void, seconds = SECONDS): number {
  for (let i = 0; i < 3; i++) fn(); // warm-up
  let n = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < seconds * 1000) {
    fn();
    n++;
    elapsed = performance.now() - start;
  }
  return (n * 1000) / elapsed;
}

/** Mean wall time (ms) of one command run, over `runs` runs. */
function commandMs(cmd: string, args: string[], runs: number): number {
  const start = performance.now();
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(cmd, args, { stdio: 'pipe' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString()}`);
  }
  return (performance.now() - start) / runs;
}

const hasOpenssl = spawnSync('openssl', ['version'], { stdio: 'pipe' }).status === 0;

function chainOf(platform: 'naples' | 'rome'): SevCertificateChain {
  const sev = (r: string): SevCertificate =>
    decodeSevCertificate(vector(`sev/platform/${platform}/${r}.cert`));
  const amd = (r: string) => decodeAmdCertificate(vector(`sev/amd-ca/${platform}/${r}.cert`));
  return {
    pdh: sev('pdh'),
    pek: sev('pek'),
    oca: sev('oca'),
    cek: sev('cek'),
    ask: amd('ask'),
    ark: amd('ark'),
  };
}

function derInt(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let b = Buffer.from(hex, 'hex');
  if (b[0] & 0x80) b = Buffer.concat([Buffer.of(0), b]);
  return Buffer.concat([Buffer.of(0x02, b.length), b]);
}

/** DER ECDSA-Sig-Value, as `openssl dgst -verify` wants it. */
function derEcdsa(r: bigint, s: bigint): Buffer {
  const body = Buffer.concat([derInt(r), derInt(s)]);
  return Buffer.concat([Buffer.of(0x30, body.length), body]);
}

const pem = (key: SevPublicKey): string =>
  sevPublicKeyToKeyObject(key).export({ type: 'spki', format: 'pem' }).toString();

/** The openssl commands verifying the same seven signatures as verifySevChain. */
function opensslChainCommands(chain: SevCertificateChain, dir: string): string[][] {
  const cmds: string[][] = [];
  let i = 0;
  const add = (key: SevPublicKey, body: Buffer, sig: Buffer, hash: string, pss: boolean) => {
    const n = i++;
    writeFileSync(join(dir, `k${n}.pem`), pem(key));
    writeFileSync(join(dir, `b${n}.bin`), body);
    writeFileSync(join(dir, `s${n}.bin`), sig);
    const opts = pss
      ? ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', `rsa_pss_saltlen:${hash === 'sha256' ? 32 : 48}`]
      : [];
    cmds.push([
      'dgst',
      `-${hash}`,
      ...opts,
      '-verify',
      join(dir, `k${n}.pem`),
      '-signature',
      join(dir, `s${n}.bin`),
      join(dir, `b${n}.bin`),
    ]);
  };
  const arkKey = amdCertificatePublicKey(chain.ark);
  const amdHash = chain.ark.modulusBits === 2048 ? 'sha256' : 'sha384';
  const rsaSig = (v: bigint, bits: number) => Buffer.from(v.toString(16).padStart(bits / 4, '0'), 'hex');
  add(
    arkKey,
    encodeAmdCertificateBody(chain.ark),
    rsaSig(chain.ark.signature, chain.ark.modulusBits),
    amdHash,
    true,
  );
  add(
    arkKey,
    encodeAmdCertificateBody(chain.ask),
    rsaSig(chain.ask.signature, chain.ark.modulusBits),
    amdHash,
    true,
  );
  const cekSlot = chain.cek.signatures[0].value;
  if (cekSlot.kind === 'rsa') {
    add(
      amdCertificatePublicKey(chain.ask),
      encodeSevCertificateBody(chain.cek),
      rsaSig(cekSlot.s, chain.ask.modulusBits),
      amdHash,
      true,
    );
  }
  const ecdsa = (child: SevCertificate, slot: number, signer: SevCertificate) => {
    const v = child.signatures[slot].value;
    if (v.kind === 'ecdsa')
      add(signer.publicKey, encodeSevCertificateBody(child), derEcdsa(v.r, v.s), 'sha256', false);
  };
  ecdsa(chain.oca, 0, chain.oca);
  ecdsa(chain.pek, 0, chain.oca);
  ecdsa(chain.pek, 1, chain.cek);
  ecdsa(chain.pdh, 0, chain.pek);
  return cmds;
}

function fmt(n: number, digits = 1): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function benchChains(dir: string): void {
  console.log(
    '\n== SEV chain verification (ARK self, ASK←ARK, CEK←ASK, OCA self, PEK←OCA, PEK←CEK, PDH←PEK)',
  );
  const spawnMs = hasOpenssl ? commandMs('openssl', ['version'], 20) : 0;
  if (hasOpenssl) console.log(`openssl process start-up (openssl version): ${fmt(spawnMs, 2)} ms`);
  for (const platform of ['naples', 'rome'] as const) {
    const chain = chainOf(platform);
    const verdict = verifySevChain(chain);
    if (!verdict.ok) throw new Error(`${platform} chain does not verify: ${verdict.failure?.message}`);
    const ours = rate(() => verifySevChain(chain));
    const oursDecode = rate(() => verifySevChain(chainOf(platform)));
    console.log(
      `${platform}: ccm verifySevChain ${fmt(ours)} chains/s (${fmt(1000 / ours, 3)} ms); read+decode+verify ${fmt(oursDecode)} chains/s`,
    );
    if (!hasOpenssl) continue;
    const cmds = opensslChainCommands(chain, join(dir, platform));
    const perChain = cmds.reduce((sum, args) => sum + commandMs('openssl', args, 5), 0);
    const net = Math.max(perChain - cmds.length * spawnMs, 1e-3);
    console.log(
      `${platform}: openssl dgst -verify ×${cmds.length}: ${fmt(perChain, 2)} ms/chain (${fmt(1000 / perChain)} chains/s); ` +
        `net of process start-up ${fmt(net, 2)} ms (${fmt(1000 / net)} chains/s)`,
    );
    console.log(
      `${platform}: ratio ccm/openssl = ${fmt(ours / (1000 / perChain), 2)}× (wall), ${fmt(ours / (1000 / net), 2)}× (net of start-up)`,
    );
    const askMs = commandMs('openssl', cmds[1], 10);
    const askRate = rate(() => verifyAmdCertificateSignature(chain.ask, chain.ark));
    const askNet = Math.max(askMs - spawnMs, 1e-3);
    console.log(
      `${platform}: ASK←ARK RSA-PSS alone: ccm ${fmt(askRate)} /s; openssl dgst ${fmt(1000 / askMs)} /s wall, ` +
        `${fmt(1000 / askNet)} /s net; ratio ${fmt(askRate / (1000 / askMs), 2)}× wall, ${fmt(askRate / (1000 / askNet), 2)}× net`,
    );
  }
}

function benchMeasurement(dir: string): void {
  console.log(
    `\n== Launch measurement (GCTX.LD SHA-256 over the image + MEASURE HMAC), ${IMAGE_MIB} MiB image`,
  );
  const image = Buffer.alloc(IMAGE_MIB * 1024 * 1024);
  randomFillSync(image);
  const tik = Buffer.alloc(16, 7);
  const mnonce = Buffer.alloc(16, 9);
  const measure = (): void => {
    const digest = computeSevLaunchDigest({ firmware: image });
    computeSevLaunchMeasure({ apiMajor: 1, apiMinor: 55, build: 1, tik, policy: 1, digest, mnonce });
  };
  const runs = rate(measure, Math.max(SECONDS, 1));
  const mibPerS = runs * IMAGE_MIB;
  console.log(
    `ccm computeSevLaunchDigest+Measure: ${fmt(mibPerS)} MiB/s (${fmt(1000 / mibPerS, 3)} ms per MiB)`,
  );
  if (!hasOpenssl) {
    console.log('openssl not found: comparison skipped');
    return;
  }
  const file = join(dir, 'image.bin');
  writeFileSync(file, image);
  const ms = commandMs('openssl', ['dgst', '-sha256', file], 3);
  const opensslMibPerS = (IMAGE_MIB * 1000) / ms;
  console.log(
    `openssl dgst -sha256 (same bytes, from a file): ${fmt(opensslMibPerS)} MiB/s (${fmt(ms / IMAGE_MIB, 3)} ms per MiB)`,
  );
  console.log(`ratio ccm/openssl = ${fmt(mibPerS / opensslMibPerS, 2)}×`);
  const real = vector('sev/kat/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9');
  const small = rate(() => computeSevLaunchDigest({ firmware: real }));
  console.log(`ccm digest of the 4 KiB sevctl OVMF vector: ${fmt(small, 0)} /s`);
}

function main(): void {
  console.log(
    `SEV benchmark — node ${process.version}; ${hasOpenssl ? execFileSync('openssl', ['version']).toString().trim() : 'no openssl'}`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'sev-bench-'));
  for (const p of ['naples', 'rome']) mkdirSync(join(dir, p));
  try {
    benchChains(dir);
    benchMeasurement(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
