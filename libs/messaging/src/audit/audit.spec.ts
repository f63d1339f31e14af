import { describe, expect, it } from 'vitest';
import { buildTimeline } from './timeline.js';
import { memoryIdentity, ScriptedRecord, trustOf } from './testing.js';
import { type StoredEvent } from './types.js';
import { auditEvents } from './verify.js';

const operator = memoryIdentity('operator');
const coordinator = memoryIdentity('saga-coordinator');
const hostAgent = memoryIdentity('host-agent');
const keyBroker = memoryIdentity('key-broker');
const trust = trustOf([operator, coordinator, hostAgent, keyBroker], { 'host-agent': 'host-a' });

/** requested, key release, transfer started/progressed, a settled step, transfer completed, finished. */
function migration(): ScriptedRecord {
  const r = new ScriptedRecord(operator);
  const id = r.migrationId;
  const host = { publisher: 'host-agent@host-a' };
  r.emit(coordinator, `ccm.evt.migration.${id}.requested`, { seq: 1, workload: 'web-1' });
  r.emit(keyBroker, `ccm.evt.key.k1.released`, { evidence: { source: 'aa', target: 'bb' }, rules: [] });
  r.emit(hostAgent, `ccm.evt.transfer.${id}.started`, {}, host);
  r.emit(hostAgent, `ccm.evt.transfer.${id}.progressed`, { bytesTransferred: 10 }, host);
  r.emit(coordinator, `ccm.evt.migration.${id}.step-started`, {
    seq: 2,
    step: 'converge',
    attempt: 1,
    participant: 'host-agent',
    command: 'converge',
    timeoutMs: 1,
  });
  r.emit(
    coordinator,
    `ccm.evt.migration.${id}.step-succeeded`,
    { seq: 3, step: 'converge', attempt: 1, participant: 'host-agent', command: 'converge', durationMs: 5 },
    { links: true },
  );
  r.emit(hostAgent, `ccm.evt.transfer.${id}.completed`, { downtimeMs: 31 }, host);
  r.emit(
    coordinator,
    `ccm.evt.migration.${id}.finished`,
    { seq: 4, phase: 'Succeeded', reason: 'done', durationMs: 9 },
    { links: true },
  );
  return r;
}

const renumber = (s: StoredEvent[]): StoredEvent[] => s.map((e, i) => ({ ...e, streamSeq: i + 1 }));
const edit = (e: StoredEvent, f: (env: Record<string, unknown>) => void): StoredEvent => {
  const env = JSON.parse(String(e.data)) as Record<string, unknown>;
  f(env);
  return { ...e, data: JSON.stringify(env) };
};

function audit(stored: StoredEvent[], streamFirstSeq?: number) {
  const records = auditEvents(stored, { trust, ...(streamFirstSeq ? { streamFirstSeq } : {}) });
  expect(records.size).toBe(1);
  return [...records.values()][0];
}

describe('the audit of a migration record', () => {
  it('passes an untouched record, every chain linked, and rebuilds its timeline', () => {
    const r = migration();
    const rec = audit(r.stored);
    expect(rec.findings).toEqual([]);
    expect(rec.verdict).toBe('intact');
    expect(rec.chains.map((c) => [c.publisher, c.events]).sort()).toEqual([
      ['host-agent@host-a', 3],
      ['key-broker', 1],
      ['saga-coordinator', 4],
    ]);
    const t = buildTimeline(rec);
    expect(t.steps).toMatchObject([{ step: 'converge', status: 'succeeded', durationMs: 5 }]);
    expect(t.keyReleases[0]?.data['evidence']).toEqual({ source: 'aa', target: 'bb' });
    expect(t.dataPlane.map((e) => e.name)).toEqual(['started', 'progressed', 'completed']);
    expect(t.outcome).toEqual({ phase: 'Succeeded', reason: 'done' });
  });

  const cases: Array<[string, (s: StoredEvent[]) => StoredEvent[], string, number]> = [
    [
      'a payload byte changed',
      (s) =>
        s.map((e, i) =>
          i === 3
            ? { ...e, data: String(e.data).replace('"bytesTransferred":10', '"bytesTransferred":90') }
            : e,
        ),
      'signature',
      4,
    ],
    [
      'a byte that breaks the JSON',
      (s) => s.map((e, i) => (i === 3 ? { ...e, data: String(e.data).replace('{', '[') } : e)),
      'malformed',
      4,
    ],
    [
      'the signature replaced',
      (s) =>
        s.map((e, i) =>
          i === 2
            ? edit(e, (env) => (env['signature'] = String(s[6].data).match(/"signature":"([^"]+)"/)![1]))
            : e,
        ),
      'signature',
      3,
    ],
    [
      'an event deleted from the middle of a chain',
      (s) => renumber(s.filter((_, i) => i !== 3)),
      'missing',
      6,
    ],
    [
      'the last event of a participant deleted',
      (s) => renumber(s.filter((_, i) => i !== 6)),
      'cross-link',
      7,
    ],
    ['an event duplicated', (s) => renumber([...s.slice(0, 4), s[3], ...s.slice(4)]), 'duplicate', 5],
    ['two events reordered', (s) => renumber([s[0], s[1], s[3], s[2], ...s.slice(4)]), 'reordered', 4],
  ];
  it.each(cases)('reports %s, naming the event and the reason', (_name, tamper, kind, streamSeq) => {
    const rec = audit(tamper(migration().stored));
    expect(rec.verdict).toBe('broken');
    expect(rec.findings).toContainEqual(
      expect.objectContaining({ kind, streamSeq, reason: expect.any(String) }),
    );
  });

  it('reports an event signed by a service that may not publish it', () => {
    const r = migration();
    const forged = new ScriptedRecord(operator);
    // The key-broker's own, validly signed, claim that the migration finished: not its aggregate.
    const env = forged.emit(keyBroker, `ccm.evt.migration.${r.migrationId}.finished`, { phase: 'Succeeded' });
    const rec = audit([
      ...r.stored,
      {
        streamSeq: 9,
        subject: `ccm.evt.migration.${r.migrationId}.finished`,
        data: JSON.stringify({ ...env, correlationid: r.migrationId }),
      },
    ]);
    expect(rec.findings[0]).toMatchObject({ kind: 'signature', streamSeq: 9 });
    const own = new ScriptedRecord(operator, 'other');
    own.emit(keyBroker, `ccm.evt.migration.${own.migrationId}.finished`, { phase: 'Succeeded' });
    const rec2 = audit(own.stored);
    expect(rec2.findings[0]).toMatchObject({ kind: 'unauthorized-publisher', streamSeq: 1 });
    expect(rec2.findings[0].reason).toContain('key-broker signed ccm.evt.migration');
  });

  it('reports a host-agent key writing another host chain', () => {
    const r = migration();
    r.emit(hostAgent, `ccm.evt.transfer.${r.migrationId}.failed`, {}, { publisher: 'host-agent@host-b' });
    const rec = audit(r.stored);
    expect(rec.findings[0]).toMatchObject({ kind: 'unauthorized-publisher', streamSeq: 9 });
  });

  it('shows events aged out of the stream as a gap, never as a pass', () => {
    const rec = audit(
      renumber(migration().stored.slice(1)).map((e) => ({ ...e, streamSeq: e.streamSeq + 1 })),
      2,
    );
    expect(rec.verdict).toBe('incomplete');
    expect(rec.findings).toEqual([expect.objectContaining({ kind: 'aged-out', streamSeq: 5, chainSeq: 2 })]);
  });

  it('refuses a chain that does not start from an operator request', () => {
    const r = new ScriptedRecord(coordinator);
    r.emit(coordinator, `ccm.evt.migration.${r.migrationId}.requested`, { seq: 1 });
    expect(audit(r.stored).findings[0]).toMatchObject({ kind: 'genesis', streamSeq: 1 });
  });

  it('keeps a record without its end open, not intact', () => {
    const rec = audit(migration().stored.slice(0, 6));
    expect(rec.findings).toEqual([]);
    expect(rec.verdict).toBe('open');
  });
});
