import { describe, expect, it } from 'vitest';
import { memoryIdentity, ScriptedRecord, trustOf } from './testing.js';
import { exportTranscript, verifyTranscript } from './transcript.js';

const operator = memoryIdentity('operator');
const coordinator = memoryIdentity('saga-coordinator');
const trust = trustOf([operator, coordinator]);

function transcript(): string {
  const r = new ScriptedRecord(operator);
  r.emit(coordinator, `ccm.evt.migration.${r.migrationId}.requested`, { seq: 1 });
  r.emit(coordinator, `ccm.evt.migration.${r.migrationId}.finished`, {
    seq: 2,
    phase: 'Succeeded',
    reason: 'ok',
  });
  const t = exportTranscript(
    r.migrationId,
    r.stored,
    { name: 'CCM_EVENTS', firstSeq: 1, lastSeq: 2 },
    trust,
    operator,
  );
  return `${JSON.stringify(t, null, 2)}\n`;
}

describe('an exported audit transcript', () => {
  it('verifies offline against a pinned trust store', () => {
    const check = verifyTranscript(transcript(), trust);
    expect(check).toMatchObject({ transcriptSignature: 'valid', pinned: true, keyMismatches: [] });
    expect(check.record.verdict).toBe('intact');
    expect(check.record.events).toHaveLength(2);
  });

  it('without a trust store checks only against its own keys and says so', () => {
    const check = verifyTranscript(transcript());
    expect(check).toMatchObject({ transcriptSignature: 'valid', pinned: false });
    expect(check.record.verdict).toBe('intact');
  });

  it('fails when a byte in the file changed', () => {
    const text = transcript();
    const at = text.indexOf('"Succeeded"') + 2;
    const changed = `${text.slice(0, at)}${text[at] === 'u' ? 'U' : 'u'}${text.slice(at + 1)}`;
    const check = verifyTranscript(changed, trust);
    expect(check.transcriptSignature).toBe('invalid');
    expect(check.record.verdict).toBe('broken');
    expect(check.record.findings[0]).toMatchObject({ kind: 'signature', streamSeq: 2 });
  });

  it('names keys the auditor does not trust', () => {
    const other = trustOf([memoryIdentity('operator'), coordinator]);
    const check = verifyTranscript(transcript(), other);
    expect(check.keyMismatches).toEqual([expect.stringContaining('(operator) is not in the trust store')]);
    expect(check.transcriptSignature).toBe('invalid');
  });

  it('refuses a file that is not a transcript with a typed error', () => {
    expect(() => verifyTranscript('{"format":"x"}')).toThrow(/not a CCM audit transcript/);
    expect(() => verifyTranscript('not json')).toThrow(/not valid JSON/);
  });
});
