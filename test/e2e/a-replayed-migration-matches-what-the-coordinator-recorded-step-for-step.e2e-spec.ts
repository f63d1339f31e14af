import {
  FAST_ENV,
  startServiceProcess,
  startTestStack,
  type ServiceProcess,
  type TestStack,
  startActors,
  newMigration,
  settled,
  type OperatorClient,
  type ScriptedParticipants,
} from '@ccm/testing';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ccm } from './support/audit-cli.js';

interface ReplayStep {
  step: string;
  kind: string;
  attempt: number;
  participant: string;
  command: string;
  status: string;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
  error?: { code: string };
}
interface Replay {
  verdict: string;
  outcome: { phase: string; reason: string };
  phases: Array<{ phase: string; from: string; to?: string }>;
  steps: ReplayStep[];
  progress: Array<{ stage: string }>;
  chains: Array<{ publisher: string }>;
}
interface AttemptRow {
  step: string;
  kind: string;
  attempt: number;
  participant: string;
  command: string;
  status: string;
  sent_at: Date;
  ended_at: Date | null;
  duration_ms: number | null;
  error: { code: string } | null;
}

const STATUS: Record<string, string> = {
  Succeeded: 'succeeded',
  Failed: 'failed',
  TimedOut: 'timed-out',
  InFlight: 'running',
};
const key = (s: { step: string; kind: string; attempt: number }) => `${s.step}/${s.kind}#${s.attempt}`;
const t = (iso: string) => Date.parse(iso);

describe('ccm audit replay of a migration the real coordinator ran matches its Postgres rows', () => {
  let stack: TestStack;
  let coordinator: ServiceProcess;
  let operator: OperatorClient;
  let participants: ScriptedParticipants;
  let db: pg.Client;
  let flags: string[];

  beforeAll(async () => {
    stack = await startTestStack({ scriptedHosts: true });
    coordinator = await startServiceProcess(
      'saga-coordinator',
      // `log` level: the launcher waits for the `ready` line.
      stack.env({ ...FAST_ENV, CCM_INSTANCE_ID: 'coordinator-1', CCM_LOG_LEVEL: 'log' }),
    );
    ({ operator, participants } = await startActors(stack));
    db = new pg.Client(stack.postgres.url);
    await db.connect();
    flags = ['--nats-url', stack.nats.url, '--keys-dir', stack.keysDir, '--json'];
  }, 120_000);
  afterAll(async () => {
    await db?.end();
    await participants?.stop();
    await operator?.close();
    await coordinator?.stop();
    await stack?.stop();
  });

  /** Runs `ccm audit replay --json` on `id` and compares it with the rows, step for step. */
  async function compare(id: string): Promise<Replay> {
    const run = await ccm(['audit', 'replay', id, ...flags]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const replay = JSON.parse(run.stdout) as Replay;
    expect(replay.verdict).toBe('intact');

    const row = (
      await db.query<{
        phase: string;
        reason: string | null;
        state: { phaseHistory: Array<{ phase: string; at: number }> };
      }>(`SELECT phase, reason, state FROM saga_coordinator.migration WHERE id = $1`, [id])
    ).rows[0];
    expect(replay.outcome).toEqual({ phase: row.phase, reason: row.reason });
    // Phases: the same sequence; each replayed start is written after the engine decided it (its
    // row timestamp) and before the next phase began.
    const history = row.state.phaseHistory;
    expect(replay.phases.map((p) => p.phase)).toEqual(history.map((h) => h.phase));
    replay.phases.forEach((p, i) => {
      expect(t(p.from)).toBeGreaterThanOrEqual(history[i].at);
      if (history[i + 1]) expect(t(p.from)).toBeLessThanOrEqual(history[i + 1].at);
    });

    const rows = (
      await db.query<AttemptRow>(
        `SELECT step, kind, attempt, participant, command, status, sent_at, ended_at, duration_ms, error
         FROM saga_coordinator.step_attempt WHERE migration_id = $1 ORDER BY sent_at, step_index, kind`,
        [id],
      )
    ).rows;
    // Every attempt, the coordinator's own admit included, is one row and one replayed step.
    const sent = replay.steps;
    expect(sent.map(key).sort()).toEqual(rows.map(key).sort());
    for (const r of rows) {
      const s = sent.find((x) => key(x) === key(r))!;
      expect({ ...s, startedAt: undefined, endedAt: undefined }).toEqual({
        step: r.step,
        kind: r.kind,
        attempt: r.attempt,
        participant: r.participant,
        command: r.command,
        status: STATUS[r.status],
        durationMs: r.duration_ms ?? undefined,
        ...(r.error ? { error: expect.objectContaining({ code: r.error.code }) } : {}),
        startedAt: undefined,
        endedAt: undefined,
      });
      // Each event is written in the transaction that recorded the attempt, after the decision.
      expect(t(s.startedAt)).toBeGreaterThanOrEqual(r.sent_at.getTime());
      if (r.ended_at) {
        expect(t(s.startedAt)).toBeLessThanOrEqual(r.ended_at.getTime());
        expect(t(s.endedAt!)).toBeGreaterThanOrEqual(r.ended_at.getTime());
      }
    }
    return replay;
  }

  it('a container migration that succeeds, with data-plane progress', async () => {
    const { key: k, id } = newMigration();
    participants.plan(id, (c) => {
      if (c.step !== 'pre-copy' || c.kind !== 'action') return undefined;
      const until = (async () => {
        for (const round of [1, 2])
          await participants.publishProgress('checkpoint', {
            migrationId: id,
            step: 'pre-copy',
            stage: `pre-dump round ${round}`,
            round,
            bytesTransferred: round * 1000,
            bytesTotal: 2000,
            at: new Date().toISOString(),
          });
      })();
      return { kind: 'hold', until };
    });
    await operator.migrate({ workload: 'audit-ok', sourceHost: 'host-a', targetHost: 'host-b' }, k);
    const { detail } = await settled(operator, id);
    expect(detail.phase).toBe('Succeeded');
    const replay = await compare(id);
    expect(replay.steps.filter((s) => s.kind === 'action')).toHaveLength(12);
    expect(replay.progress.map((p) => p.stage)).toEqual(['pre-dump round 1', 'pre-dump round 2']);
  });

  it('a container migration that fails at restore and rolls back through its compensations', async () => {
    const { key: k, id } = newMigration();
    participants.plan(id, (c) =>
      c.step === 'restore' && c.kind === 'action'
        ? { kind: 'fail', retryable: false, effect: 'none', code: 'RESTORE_FAILED', message: 'no pid' }
        : undefined,
    );
    await operator.migrate({ workload: 'audit-rb', sourceHost: 'host-a', targetHost: 'host-b' }, k);
    const { detail } = await settled(operator, id);
    expect(detail.phase).toBe('RolledBack');
    const replay = await compare(id);
    expect(replay.steps.find((s) => s.step === 'restore' && s.kind === 'action')).toMatchObject({
      status: 'failed',
      error: { code: 'RESTORE_FAILED' },
    });
    expect(replay.steps.filter((s) => s.kind === 'compensation').length).toBeGreaterThan(0);
  });

  it('an exported transcript verifies offline with ccm, and one changed byte in the file fails it', async () => {
    const { key: k, id } = newMigration();
    await operator.migrate({ workload: 'audit-export', sourceHost: 'host-a', targetHost: 'host-b' }, k);
    expect((await settled(operator, id)).detail.phase).toBe('Succeeded');
    const dir = await mkdtemp(join(tmpdir(), 'ccm-transcript-'));
    try {
      const file = join(dir, 'transcript.json');
      const exported = await ccm(['audit', 'export', id, '--out', file, ...flags]);
      expect(exported.code).toBe(0);
      expect(JSON.parse(exported.stdout)).toMatchObject({ file, verdict: 'intact' });
      expect(JSON.parse(exported.stdout).events).toBeGreaterThan(12);

      // Offline: no NATS flag, the trust store made by ccm-keys pins every signer.
      const trust = ['--trust', join(stack.keysDir, 'trust.json')];
      const ok = await ccm(['audit', 'verify-file', file, ...trust, '--json']);
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, transcriptSignature: 'valid' });

      // One byte of one event's payload changed inside the file (still valid JSON).
      const text = await readFile(file, 'utf8');
      const at = text.indexOf('audit-export');
      expect(at).toBeGreaterThan(0);
      const flipped = join(dir, 'flipped.json');
      await writeFile(flipped, `${text.slice(0, at)}X${text.slice(at + 1)}`);
      const bad = await ccm(['audit', 'verify-file', flipped, ...trust, '--json']);
      expect(bad.code).toBe(6);
      expect(bad.stdout + bad.stderr).toMatch(/signature|invalid|broken/i);

      // The same check of the whole range on the live stream passes.
      const all = await ccm(['audit', 'verify', '--since', '1h', ...flags]);
      expect(all.code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
