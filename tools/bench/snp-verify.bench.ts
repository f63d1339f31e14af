/**
 * SNP verification throughput: report + VCEK/VLEK chain verifications per second with @ccm/sev, beside
 * the same work done by `openssl` commands on the same inputs (`openssl verify` of the chain, then
 * `openssl dgst -sha384 -verify` of the report signature converted to DER). Prints figures only.
 *
 * Run: npm run bench:snp  (compiled by tools/build.mjs to dist/tools/bench/snp-verify.bench.js)
 */
import { execFileSync } from 'node:child_process';
import { type X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  assembleSnpCertChain,
  reportSignatureDer,
  reportSignedBytes,
  type SnpCertChain,
  verifyReportSignature,
  verifySnpCertChain,
  verifySnpEvidence,
} from '@ccm/sev';

const BENCH_SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const OPENSSL_SECONDS = Number(process.env.OPENSSL_SECONDS ?? 3);
const VECTOR_TIME = new Date('2025-06-01T00:00:00Z');

function repoRoot(from: string): string {
  for (let dir = from; dirname(dir) !== dir; dir = dirname(dir))
    if (existsSync(join(dir, 'nx.json'))) return dir;
  throw new Error(`no nx.json above ${from}`);
}

const vectors = join(repoRoot(import.meta.dirname), '..', 'shared', 'vectors');
const read = (p: string) => readFileSync(join(vectors, p));

interface Case {
  readonly name: string;
  readonly report: Uint8Array;
  readonly vekDer: Buffer;
  readonly casPem: string;
  readonly allowDebug: boolean;
}

const cases: Case[] = [
  [
    'virtee-milan-vcek',
    'virtee-milan-vcek/report_milan.bin',
    'virtee-milan-vcek/vcek_milan.der',
    'snp/reports/virtee-milan-vcek/cert_chain_milan.pem',
  ],
  [
    'gosevguest-milan-vcek',
    'gosevguest-milan-vcek/attestation.bin',
    'gosevguest-milan-vcek/vcek.der',
    'snp/amd-ca/milan/ask_ark_asvk.pem',
  ],
  [
    'trustee-milan-vlek',
    'trustee-milan-vlek/report.bin',
    'trustee-milan-vlek/vlek.der',
    'snp/amd-ca/milan/asvk_ark_kds_vlek_chain.pem',
  ],
].map(([name, report, vek, cas]) => ({
  name,
  report: new Uint8Array(read(`snp/reports/${report}`)),
  vekDer: read(`snp/reports/${vek}`),
  casPem: read(cas).toString('utf8'),
  allowDebug: name.startsWith('gosevguest'),
}));

/** Runs `fn` repeatedly for about `seconds`; returns operations per second. */
function rate(seconds: number, fn: () => void): number {
  for (let i = 0; i < 3; i++) fn(); // warm-up
  let n = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < limit) {
    fn();
    n++;
    elapsed = process.hrtime.bigint() - start;
  }
  return n / (Number(elapsed) / 1e9);
}

const pemOf = (c: X509Certificate) => c.toString();

/** Files and commands that make openssl do the same verification. */
function opensslWork(c: Case, dir: string): { chain: string[]; signature: string[] } {
  const chain = assembleSnpCertChain(c.vekDer, c.casPem);
  const x = (v: SnpCertChain[keyof SnpCertChain]) => v as X509Certificate;
  const file = (name: string, data: string | Uint8Array) => {
    const path = join(dir, `${c.name}-${name}`);
    writeFileSync(path, data);
    return path;
  };
  const ark = file('ark.pem', pemOf(x(chain.ark)));
  const ask = file('ask.pem', pemOf(x(chain.ask)));
  const vek = file('vek.pem', pemOf(x(chain.vek)));
  const pub = file('vek-pub.pem', x(chain.vek).publicKey.export({ type: 'spki', format: 'pem' }));
  const sig = file('sig.der', reportSignatureDer(c.report));
  const signed = file('signed.bin', reportSignedBytes(c.report));
  return {
    chain: ['verify', '-no_check_time', '-CAfile', ark, '-untrusted', ask, vek],
    signature: ['dgst', '-sha384', '-verify', pub, '-signature', sig, signed],
  };
}

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Primitive rates from `openssl speed` (in-process, no parsing, no process start). */
function opensslSpeed(): { rsa4096: number; p384: number } | undefined {
  try {
    const out = openssl(['speed', '-seconds', '1', 'rsa4096', 'ecdsap384']);
    const rsa = /rsa 4096 bits\s+\S+\s+\S+\s+\S+\s+(\S+)/.exec(out);
    const ec = /384 bits ecdsa \(nistp384\)\s+\S+\s+\S+\s+\S+\s+(\S+)/.exec(out);
    return rsa && ec ? { rsa4096: Number(rsa[1]), p384: Number(ec[1]) } : undefined;
  } catch {
    return undefined;
  }
}

const fmt = (n: number) => n.toFixed(n >= 100 ? 0 : 1).padStart(9);

function main(): void {
  console.log(
    `SNP report + chain verification (node ${process.version}, ${execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim()})`,
  );
  console.log(
    'ours = @ccm/sev verifySnpEvidence: parse ARK/ASK/VEK from PEM/DER, verify chain, parse report, verify signature, binding, policy',
  );
  console.log(
    'openssl = `openssl verify` (chain) + `openssl dgst -sha384 -verify` (report), one process each\n',
  );
  const dir = mkdtempSync(join(tmpdir(), 'snp-bench-'));
  try {
    console.log(
      `${'case'.padEnd(24)}${'ours/s'.padStart(9)}${'chain/s'.padStart(9)}${'sig/s'.padStart(9)}${'openssl/s'.padStart(11)}  ratio`,
    );
    const ratios: number[] = [];
    for (const c of cases) {
      const options = { now: VECTOR_TIME, policy: { allowDebug: c.allowDebug } };
      const first = verifySnpEvidence(c.report, assembleSnpCertChain(c.vekDer, c.casPem), options);
      const ours = rate(BENCH_SECONDS, () => {
        verifySnpEvidence(c.report, assembleSnpCertChain(c.vekDer, c.casPem), options);
      });
      const parsed = assembleSnpCertChain(c.vekDer, c.casPem);
      const chainOnly = rate(BENCH_SECONDS / 2, () => void verifySnpCertChain(parsed, options));
      const key = (parsed.vek as X509Certificate).publicKey;
      const sigOnly = rate(BENCH_SECONDS / 2, () => verifyReportSignature(c.report, key));

      const work = opensslWork(c, dir);
      const agree = openssl(work.chain).endsWith(': OK') && openssl(work.signature) === 'Verified OK';
      const theirs = rate(OPENSSL_SECONDS, () => {
        openssl(work.chain);
        openssl(work.signature);
      });
      ratios.push(ours / theirs);
      console.log(
        `${c.name.padEnd(24)}${fmt(ours)}${fmt(chainOnly)}${fmt(sigOnly)}${fmt(theirs).padStart(11)}  ${(ours / theirs).toFixed(1)}x` +
          `  (ours ok=${first.ok}, openssl ok=${agree})`,
      );
    }
    const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    console.log(`\nmean ratio ours/openssl-commands: ${mean.toFixed(1)}x`);
    const speed = opensslSpeed();
    if (speed) {
      // One verification = 3 RSA-4096 verifies (ARK self, ASK, VEK) + 1 ECDSA P-384 verify.
      const bound = 1 / (3 / speed.rsa4096 + 1 / speed.p384);
      console.log(
        `openssl speed primitives: rsa4096 verify ${speed.rsa4096.toFixed(0)}/s, ecdsa p384 verify ${speed.p384.toFixed(0)}/s` +
          ` -> in-process crypto bound ${bound.toFixed(0)} verifications/s`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
