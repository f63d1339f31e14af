import { migrationIdFor, subjects, type ServiceName } from '@ccm/contracts';
import { CONTAINER_MIGRATION } from '@ccm/saga';
import { metricSamples, PollAbortError, pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESTART_COORDINATOR_ENV, runsExactlyOnce, SagaRows } from './support/chaos.js';
import {
  type SCALABLE,
  signal,
  startRealContainerStack,
  type RealContainerStack,
} from './support/real-container-stack.js';

/**
 * When each service loses a replica: at the step it serves, the replica whose handler runs that
 * step's command (read from each replica's `ccm_handlers_in_flight`). The coordinator replica killed
 * is the one holding the migration's lease. `long`: a step that lasts long enough to be caught in
 * every run (the others are caught when a poll lands inside them).
 */
const KILLS: Array<{ service: (typeof SCALABLE)[number]; step: string; long?: boolean }> = [
  { service: 'key-broker', step: 'attest-target' },
  { service: 'vm-lifecycle', step: 'provision-target', long: true },
  { service: 'saga-coordinator', step: 'join-overlay' },
  { service: 'container-checkpoint', step: 'pre-copy', long: true },
  { service: 'network-overlay', step: 'cut-over' },
];

const IN_FLIGHT = 'ccm_handlers_in_flight';

/** The subject of a container-migration step's command to its participant. */
function commandSubject(step: string): string {
  const { action } = CONTAINER_MIGRATION.steps.find((s) => s.name === step)!;
  return subjects.cmd(action.participant, action.command);
}

/** What happened to a service's replicas at its step. */
interface Kill {
  killed: string;
  /** The killed replica's handler ran the step's command when it was stopped (no reply stored). */
  caught: boolean;
  /** The other replica (that must then answer the step). */
  survivor: string;
  line: string;
}

describe('two replicas of key-broker, vm-lifecycle, container-checkpoint, network-overlay and the coordinator', () => {
  let s: RealContainerStack;
  let rows: SagaRows;

  beforeAll(async () => {
    // No supervisor: a killed replica stays dead, its twin carries on alone.
    s = await startRealContainerStack(['scaled-1'], {
      replicas: 2,
      coordinatorEnv: RESTART_COORDINATOR_ENV,
    });
    rows = await SagaRows.connect(s.stack.postgres.url);
    await s.runContainer('scaled-1', 8192, 2000);
  }, 300_000);

  afterAll(async () => {
    await rows?.close();
    await s?.close();
  });

  /** The replicas of `service` whose handler runs `subject` for migration `id` now. */
  const holders = async (service: string, subject: string, id: string): Promise<string[]> => {
    const replicas = [service, `${service}#2`];
    const held = await Promise.all(
      replicas.map(async (name) =>
        (await metricSamples(s.services.get(name)!.httpUrl, IN_FLIGHT)).some(
          (x) => x.labels.subject === subject && x.labels.migration === id && x.value > 0,
        ),
      ),
    );
    return replicas.filter((_, i) => held[i]);
  };

  /**
   * Waits until a replica of `service` runs the step's command, stops it (SIGSTOP: it can no longer
   * commit a reply), reads whether a reply was stored, and kills it. A step over before any poll saw
   * it held (too quick) costs the first or second replica instead, as before.
   */
  const killAtStep = async (
    id: string,
    service: ServiceName,
    step: string,
    index: number,
    refused: () => string | undefined,
  ): Promise<Kill> => {
    const subject = commandSubject(step);
    const seen = await pollUntil(
      `${subject} of ${id} run by a ${service} replica, or ${step} done`,
      async () => {
        const why = refused();
        if (why) throw new PollAbortError(why);
        const held = await holders(service, subject, id);
        if (held.length) return held;
        return (await rows.succeeded(id, step)) ? [] : undefined;
      },
      Boolean,
      { timeoutMs: 120_000, intervalMs: 1 },
    );
    // Its inbox row serializes a command's runs: one replica acts, a repeat at the other waits.
    expect(seen.length, `${service} replicas running ${subject}: ${seen.join(', ')}`).toBeLessThanOrEqual(1);
    const killed = seen[0] ?? `${service}${index % 2 ? '#2' : ''}`;
    const survivor = killed.endsWith('#2') ? service : `${service}#2`;
    const pid = s.pidOf(killed)!;
    let answered = true;
    try {
      if (seen.length) {
        expect(signal(pid, 'SIGSTOP'), killed).toBe(true);
        answered = await rows.commandAnswered(service, id, step);
      }
    } finally {
      expect(signal(pid, 'SIGKILL'), killed).toBe(true);
    }
    const caught = seen.length > 0 && !answered;
    const line = !seen.length
      ? `${killed} after ${step} (no replica seen running it: just done)`
      : caught
        ? `${killed} while running ${step}'s command (${survivor} idle)`
        : `${killed}, seen running ${step}'s command, but it had answered when stopped (just done)`;
    return { killed, caught, survivor, line };
  };

  it('one replica of each killed with SIGKILL mid-migration, the one running its step: the migration still ends Succeeded and the container runs once, at the target', async () => {
    const id = migrationIdFor('scaled-1');
    // Polled from the request on: `attest-target` is the second step and a short one.
    let refused: string | undefined;
    const migrate = s.migrate('scaled-1', 'scaled-1').then((r) => {
      if (r.code !== 0) refused = `ccm migrate exited ${r.code}: ${r.stderr}`;
      return r;
    });
    const kills: Kill[] = [];
    for (const [i, k] of KILLS.entries()) {
      if (k.service !== 'saga-coordinator') {
        kills.push(await killAtStep(id, k.service, k.step, i, () => refused));
        continue;
      }
      await pollUntil(
        `${k.step} of ${id} under way`,
        async () => (await rows.inFlight(id, k.step)) || (await rows.succeeded(id, k.step)),
        Boolean,
        { timeoutMs: 120_000, intervalMs: 5 },
      );
      const owner =
        (await rows.leaseOwner(id)) === 'saga-coordinator-e2e' ? 'saga-coordinator' : 'saga-coordinator#2';
      const inFlight = await rows.inFlight(id, k.step);
      expect(signal(s.pidOf(owner)!, 'SIGKILL'), owner).toBe(true);
      const survivor = owner.endsWith('#2') ? 'saga-coordinator' : 'saga-coordinator#2';
      kills.push({
        killed: owner,
        caught: inFlight,
        survivor,
        line: `${owner} holding the lease during ${k.step}${inFlight ? '' : ' (just done)'}`,
      });
    }
    const run = await migrate;
    expect(run.code, run.stderr).toBe(0);
    const end = await rows.endOf(id);
    // The attempts of each step a replica died in (TimedOut first: the dead one held its command).
    for (const [i, k] of KILLS.entries())
      kills[i].line += ` (attempts ${(await rows.attempts(id, k.step)).join(', ')})`;
    console.log(`[two replicas] killed ${kills.map((k) => k.line).join('; ')} → ${end.phase}`);
    expect(end.phase, end.reason ?? '').toBe('Succeeded');
    expect(await runsExactlyOnce(s, 'scaled-1')).not.toBe(s.sourceVm);
    for (const [i, k] of KILLS.entries()) {
      if (k.long) expect(kills[i].caught, `${k.step}: ${kills[i].line}`).toBe(true);
      if (!kills[i].caught || k.service === 'saga-coordinator') continue;
      // The killed replica died without answering: the step's success is the survivor's reply.
      const answered = (
        await metricSamples(s.services.get(kills[i].survivor)!.httpUrl, 'ccm_messages_handled_total')
      )
        .filter((x) => x.labels.subject === commandSubject(k.step) && x.labels.outcome === 'ok')
        .reduce((n, x) => n + x.value, 0);
      expect(answered, `${kills[i].survivor} answered ${k.step}`).toBeGreaterThan(0);
    }
  }, 300_000);
});
