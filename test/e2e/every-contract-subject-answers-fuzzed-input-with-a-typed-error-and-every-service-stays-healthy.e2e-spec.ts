import { SERVICES } from '@ccm/contracts';
import { ask, bytesOf, sealed } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  casesFor,
  fuzzRequest,
  fuzzStream,
  FuzzTally,
  pingEveryService,
  startFuzzStack,
  type FuzzStack,
} from '../../tools/fuzz/bus-fuzz.js';

/** Generated cases per subject (issue 8's known bad inputs come on top); `CCM_FUZZ_RUNS=500` for more. */
const RUNS = Number(process.env['CCM_FUZZ_RUNS'] ?? 6);
/** fast-check's seed; a failure prints it, and `CCM_FUZZ_SEED=<seed>` replays the same cases. */
const SEED = Number(process.env['CCM_FUZZ_SEED'] ?? Date.now() % 2 ** 31);

/**
 * Property-based fuzzing of every subject libs/contracts gives a service (pings, saga steps, host
 * commands, the key-broker's, overlay's and guest-agent's verbs, the coordinator's queries, intake and
 * data-plane progress), sent with the raw NATS protocol client to every service running as its own
 * process on a real nats-server and Postgres: payloads generated from each subject's schema and
 * mutated, in mutated envelopes and texts. No reply is INTERNAL, untyped or missing; what every
 * receiver must refuse is refused (and, on a stream, parked at its first delivery); every service is
 * alive, healthy and answers a signed ping afterwards.
 */
describe('every contract subject answers fuzzed input with a typed error and every service stays healthy', () => {
  let fz: FuzzStack;
  const requests = new FuzzTally();
  const streams = new FuzzTally();

  beforeAll(async () => {
    fz = await startFuzzStack();
  }, 300_000);
  afterAll(async () => {
    await fz?.stop();
    process.stdout.write(
      `fuzz (seed ${SEED}, ${RUNS} generated cases per subject):\n${requests.report()}\n${streams.report()}\n`,
    );
  });

  it('libs/contracts names every handler the services wired, and each service has subjects to fuzz', async () => {
    expect(fz.uncontracted).toEqual([]);
    expect([...new Set(fz.targets.map((t) => t.service))].sort()).toEqual([...SERVICES].sort());
    // Subjects whose service does not serve them yet: nobody answers them (no hidden subscriber).
    const { raw, identity } = await fz.client('saga-coordinator');
    for (const c of fz.unserved.filter((u) => u.kind === 'request')) {
      await expect(
        ask(raw, fz.trust, c.subject, bytesOf(sealed(identity, c.subject, {}))),
        c.subject,
      ).rejects.toThrow(/no responders/);
    }
    process.stdout.write(
      `fuzz: ${fz.targets.length} subjects served; not served yet: ${fz.unserved.map((u) => u.subject).join(', ') || 'none'}\n`,
    );
  });

  it('no request subject answers INTERNAL, an untyped code or nothing, and none takes what it must refuse', async () => {
    for (const target of fz.targets.filter((t) => t.kind === 'request')) {
      await fuzzRequest(fz, target, casesFor(target, RUNS, SEED), requests);
    }
    expect(requests.findings, `seed ${SEED}`).toEqual([]);
    expect(requests.outcomes).toBeGreaterThan(fz.targets.length * RUNS);
  }, 300_000);

  it('intake and progress consumers park what they refuse at its first delivery, never as handler failed', async () => {
    for (const target of fz.targets.filter((t) => t.kind === 'stream')) {
      await fuzzStream(fz, target, casesFor(target, RUNS, SEED), streams);
    }
    expect(streams.findings, `seed ${SEED}`).toEqual([]);
    expect([...streams.byCode.keys()].some((c) => c.startsWith('parked '))).toBe(true);
  }, 300_000);

  it('every service is still running, reports healthy and answers a signed ping', async () => {
    expect(fz.exited()).toEqual([]);
    expect(await fz.health()).toEqual(Object.fromEntries([...fz.procs.keys()].map((s) => [s, 200])));
    expect(await pingEveryService(fz)).toEqual(
      Object.fromEntries([...fz.procs.keys()].map((s) => [s, 'ok'])),
    );
  });
});
