import { STREAMS, type SignerName } from '@ccm/contracts';
import { type Identity } from '@ccm/keys';
import { ScriptedRecord } from '@ccm/messaging/internal';
import { DiscardPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { startTestStack, type TestStack } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { ExitCode } from '../errors.js';
import { capture } from '../testing/capture.js';

/** CCM_EVENTS keeps 12 events: of 14 published, the old migration's first 2 age out. */
const MAX_MSGS = 12;

describe('ccm audit on a CCM_EVENTS whose retention dropped a migration’s first events', () => {
  let stack: TestStack;
  let flags: string[];
  const ids = {} as Record<SignerName, Identity>;
  let old: ScriptedRecord;
  let recent: ScriptedRecord;

  /** Publishes a record's events as their signers do (each with its own NATS user). */
  async function publish(r: ScriptedRecord): Promise<void> {
    for (const e of r.stored) {
      const source = (JSON.parse(String(e.data)) as { source: SignerName }).source;
      const nc = await stack.connectAs(source, source === 'host-agent' ? 'host-a' : undefined);
      await jetstream(nc).publish(e.subject, String(e.data));
    }
  }

  /** A container migration as the coordinator, a host-agent and the key-broker chain it. */
  function migration(): ScriptedRecord {
    const r = new ScriptedRecord(ids.operator);
    const m = r.migrationId;
    r.emit(ids['saga-coordinator'], `ccm.evt.migration.${m}.requested`, { seq: 1, workload: 'web-1' });
    r.emit(ids['key-broker'], `ccm.evt.key.k-${m}.released`, { evidence: { source: 'aa' } });
    r.emit(ids['host-agent'], `ccm.evt.transfer.${m}.started`, {}, { publisher: 'host-agent@host-a' });
    r.emit(ids['saga-coordinator'], `ccm.evt.migration.${m}.phase-changed`, { seq: 2, phase: 'Running' });
    r.emit(ids['host-agent'], `ccm.evt.transfer.${m}.completed`, {}, { publisher: 'host-agent@host-a' });
    r.emit(
      ids['saga-coordinator'],
      `ccm.evt.migration.${m}.finished`,
      { seq: 3, phase: 'Succeeded', reason: 'done' },
      { links: true },
    );
    return r;
  }

  beforeAll(async () => {
    stack = await startTestStack({
      postgres: false,
      hostIds: ['host-a'],
      eventsRetention: { maxAgeMs: 0, maxBytes: 0, maxMsgs: MAX_MSGS, discard: 'old' },
    });
    flags = ['--nats-url', stack.nats.url, '--keys-dir', stack.keysDir, '--json'];
    for (const s of ['operator', 'saga-coordinator', 'key-broker', 'host-agent'] as const)
      ids[s] = await stack.identity(s, s === 'host-agent' ? 'host-a' : undefined);
    old = migration();
    recent = migration();
    await publish(old);
    await publish(recent);
    // Two more events of a third migration push the old one's first two out.
    const third = new ScriptedRecord(ids.operator);
    const m = third.migrationId;
    third.emit(ids['saga-coordinator'], `ccm.evt.migration.${m}.requested`, { seq: 1 });
    third.emit(ids['saga-coordinator'], `ccm.evt.migration.${m}.phase-changed`, { seq: 2 });
    await publish(third);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('the bootstrap applied the configured limits to CCM_EVENTS, which dropped the oldest', async () => {
    const jsm = await jetstreamManager(await stack.connectAs('operator'));
    const info = await jsm.streams.info(STREAMS.events.name);
    expect(info.config).toMatchObject({ max_msgs: MAX_MSGS, max_bytes: -1, max_age: 0 });
    expect(info.config.discard).toBe(DiscardPolicy.Old);
    expect(info.state).toMatchObject({ first_seq: 3, last_seq: 14, messages: MAX_MSGS });
  });

  it('verify names the gap and exits 6; --allow-aged-out still lists it but exits 0', async () => {
    const c = capture();
    expect(await runCli(['audit', 'verify', ...flags], c.io)).toBe(ExitCode.AuditFailed);
    const report = JSON.parse(c.out.join('')) as {
      migrations: Array<{ migrationId: string; verdict: string; findings: Array<{ reason: string }> }>;
      firstBroken: { migrationId: string; kind: string; reason: string };
    };
    const verdicts = Object.fromEntries(report.migrations.map((r) => [r.migrationId, r.verdict]));
    expect(verdicts[old.migrationId]).toBe('incomplete');
    expect(verdicts[recent.migrationId]).toBe('intact');
    expect(report.firstBroken).toMatchObject({ migrationId: old.migrationId, kind: 'aged-out' });
    expect(report.firstBroken.reason).toMatch(
      /event 1 of chain .+saga-coordinator is no longer in the stream \(retention: its first stored seq is #3\)/,
    );
    expect(c.err.join('')).toContain(`first broken record: #4 ${old.migrationId} aged-out`);

    const allowed = capture();
    expect(await runCli(['audit', 'verify', '--allow-aged-out', ...flags], allowed.io)).toBe(ExitCode.Ok);
    const again = JSON.parse(allowed.out.join('')) as typeof report;
    expect(again.migrations.find((r) => r.migrationId === old.migrationId)?.verdict).toBe('incomplete');
  });

  it('replay shows every aged-out gap (chains and cross-links) and exits 6 unless allowed', async () => {
    const c = capture();
    expect(await runCli(['audit', 'replay', old.migrationId, ...flags], c.io)).toBe(ExitCode.AuditFailed);
    const t = JSON.parse(c.out.join('')) as {
      verdict: string;
      findings: Array<{ kind: string; reason: string; streamSeq: number }>;
    };
    expect(t.verdict).toBe('incomplete');
    // The coordinator's seq 1 and the key-broker's only event are gone: the chain gap and the
    // finished event's link to the key-broker's head are both aged out, not tampering.
    expect(t.findings.map((f) => f.kind)).toEqual(['aged-out', 'aged-out']);
    expect(t.findings[1].reason).toMatch(
      /commits to seq 1 of .+key-broker, which is no longer in the stream/,
    );
    const human = capture();
    expect(
      await runCli(['audit', 'replay', old.migrationId, '--allow-aged-out', ...flags.slice(0, -1)], human.io),
    ).toBe(ExitCode.Ok);
    expect(human.out.join('')).toContain('INCOMPLETE: events have aged out of the stream');
  });

  it('a migration that was intact stays intact: a gap belongs to the one record that lost events', async () => {
    const c = capture();
    expect(await runCli(['audit', 'replay', recent.migrationId, ...flags], c.io)).toBe(ExitCode.Ok);
    expect(JSON.parse(c.out.join(''))).toMatchObject({ verdict: 'intact', findings: [] });
  });
});
