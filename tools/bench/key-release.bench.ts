/**
 * Migration key release benchmark: the key-broker (the built service as its own process, real
 * nats-server and Postgres) releasing container migration keys to two real guest-agent processes
 * (simulated SNP guests on software secure processors of one lab). Each release is a full decision: two broker nonces, two
 * guests' fresh SNP evidence over NATS, both reports and VCEK chains verified under the owner policy,
 * the key sealed to both attested keys and delivered (`load-key`), the decision signed and chained in
 * the release log. Prints:
 * - p50/p99 latency of one release over NATS (sequential, as the coordinator's step sends it);
 * - releases/s with CONCURRENCY releases in flight;
 * - beside them, the bound libs/sev sets in the same run: `verifySnpEvidence` per second on one of these
 *   reports, and half of it (a decision verifies two reports).
 * Asserts nothing.
 *
 * Run: `npm run bench:key-release` (builds, then node dist/tools/bench/key-release.bench.js).
 * Environment: KEY_RELEASE_BENCH_RUNS (sequential releases, default 40), KEY_RELEASE_BENCH_CONCURRENCY
 * (default 4), BENCH_SECONDS (libs/sev loop, default 2).
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  KeyReleaseResultSchema,
  OwnerPolicySchema,
  PolicyVersionSchema,
  subjects,
  type SignerName,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { verifySnpEvidence } from '@ccm/sev';
import {
  LabAuthority,
  labPin,
  launchSimSnpGuest,
  simGuestEvidence,
  simSnpMeasurement,
  SoftwareSecureProcessor,
} from '@ccm/sev-emulator';
import { startServiceProcess, startTestStack, stepCommand, type ServiceProcess } from '@ccm/testing';
import { type z } from 'zod';

const RUNS = Number(process.env['KEY_RELEASE_BENCH_RUNS'] ?? 40);
const CONCURRENCY = Number(process.env['KEY_RELEASE_BENCH_CONCURRENCY'] ?? 4);
const BENCH_SECONDS = Number(process.env['BENCH_SECONDS'] ?? 2);
const IMAGE = 'bench-image';

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

const stack = await startTestStack();
const work = await mkdtemp(join(tmpdir(), 'ccm-bench-kr-'));
const guests: ServiceProcess[] = [];
const broker = await startServiceProcess('key-broker', stack.env({ CCM_INSTANCE_ID: 'kb-bench' }));
const trust = await loadTrustStore(stack.keysDir);
const send = async <S extends z.ZodType>(signer: SignerName, subject: string, data: unknown, reply: S) =>
  signedRequest(await conn(signer), await loadIdentity(stack.keysDir, signer), trust, subject, data, reply, {
    idempotencyKey: randomUUID(),
    timeoutMs: 20_000,
  });
const conns = new Map<SignerName, Awaited<ReturnType<typeof stack.connectAs>>>();
async function conn(signer: SignerName) {
  let c = conns.get(signer);
  if (!c) conns.set(signer, (c = await stack.connectAs(signer)));
  return c;
}
try {
  const lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
  const labRoot = {
    name: 'bench-lab',
    generation: 'milan' as const,
    arkBodySha256: labPin(lab),
    arkX509Sha256: [...lab.trustAnchors().snpTrustedArks.keys()][0],
  };
  const dirs = ['a', 'b'].map((h) => SoftwareSecureProcessor.create(join(work, `sp-${h}`), { lab }).stateDir);
  for (const [i, vmId] of ['vm-src', 'vm-tgt'].entries()) {
    guests.push(
      await startServiceProcess(
        'guest-agent',
        stack.env({
          CCM_VM_ID: vmId,
          CCM_INSTANCE_ID: `bench-${vmId}`,
          CCM_GUEST_SEV: 'emulated',
          CCM_GUEST_SEV_DIR: dirs[i],
          CCM_GUEST_IMAGE: IMAGE,
        }),
      ),
    );
  }
  const ownerPolicy = OwnerPolicySchema.parse({
    workloadClass: 'web',
    environment: 'lab',
    workloads: ['web-1'],
    trustedRoots: { amd: [], lab: [labRoot] },
    sev: { minFirmware: { apiMajor: 0, apiMinor: 14 }, guestPolicy: 0x1, launchDigests: [] },
    snp: { launchDigests: [simSnpMeasurement(IMAGE).toString('hex')] },
    migration: { allowed: true, targetHosts: ['host-b'] },
  });
  await send(
    GUEST_OWNER,
    keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
    { policy: ownerPolicy, expectedVersion: 0 },
    PolicyVersionSchema,
  );
  const release = () =>
    send(
      'saga-coordinator',
      subjects.cmd('key-broker', 'release-migration-key'),
      stepCommand({ step: 'release-key', context: { sourceVmId: 'vm-src', targetVmId: 'vm-tgt' } }),
      KeyReleaseResultSchema,
    );

  await release(); // warm-up: connections, prepared paths
  const latencies: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await release();
    latencies.push(performance.now() - t0);
  }
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (done < RUNS) {
        done++;
        await release();
      }
    }),
  );
  const concurrentSeconds = (performance.now() - t0) / 1000;

  // libs/sev's bound on the same kind of evidence: one guest's report and chain, verified in a loop.
  const sp = SoftwareSecureProcessor.open(dirs[0]);
  sp.snpInit();
  sp.init();
  const g = launchSimSnpGuest(sp, { image: IMAGE });
  const e = simGuestEvidence(sp, g, 'vm-bench', Buffer.alloc(32, 1), {
    nonce: '11'.repeat(32),
    migrationId: `mig-${randomUUID()}`,
  });
  const report = Buffer.from(e.report, 'base64');
  const x = (b: string) => new X509Certificate(Buffer.from(b, 'base64'));
  const chain = { ark: x(e.vcekChain.ark), ask: x(e.vcekChain.ask), vek: x(e.vcekChain.vcek) };
  const trustedArks = lab.trustAnchors().snpTrustedArks;
  let verified = 0;
  const v0 = performance.now();
  while (performance.now() - v0 < BENCH_SECONDS * 1000) {
    if (!verifySnpEvidence(report, chain, { trustedArks }).ok)
      throw new Error('the bench evidence did not verify');
    verified++;
  }
  const perSecond = verified / ((performance.now() - v0) / 1000);

  const f = (n: number) => n.toFixed(1);
  console.log(`key release (two guests, full verification, over NATS; ${RUNS} releases each way)`);
  console.log(
    `  one release, sequential: p50 ${f(percentile(latencies, 50))} ms  p99 ${f(percentile(latencies, 99))} ms`,
  );
  console.log(
    `  sequential:              ${f(1000 / (latencies.reduce((a, b) => a + b, 0) / latencies.length))} releases/s`,
  );
  console.log(`  ${CONCURRENCY} in flight:             ${f(RUNS / concurrentSeconds)} releases/s`);
  console.log(
    `libs/sev bound (same run): verifySnpEvidence ${f(perSecond)}/s → ${f(perSecond / 2)} decisions/s (two reports each)`,
  );
} finally {
  await Promise.allSettled(guests.map((g) => g.stop()));
  await broker.stop();
  await stack.stop();
  await rm(work, { recursive: true, force: true });
}
