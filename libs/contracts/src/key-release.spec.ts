import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  guestEvidenceReportData,
  RELEASE_LOG_GENESIS,
  releaseRecordHash,
  verifyReleaseLog,
  type ReleaseDecision,
  type ReleaseRecord,
} from './key-release.js';

const broker = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
/** Only the key-broker's key is trusted for the log (another identity's key is not). */
const keyFor = (k: string) => (k === 'kb' ? broker.publicKey : undefined);

function log(n: number): ReleaseRecord[] {
  const out: ReleaseRecord[] = [];
  let prevHash = RELEASE_LOG_GENESIS;
  for (let seq = 1; seq <= n; seq++) {
    const decision: ReleaseDecision = {
      seq,
      migrationId: `mig-${seq}`,
      workloadId: 'web-1',
      granted: seq % 2 === 0,
      evidence: [],
      rules: [{ rule: 'migration-allowed', ok: true }],
      decidedAt: new Date(0).toISOString(),
    };
    const hash = releaseRecordHash(decision, prevHash);
    out.push({
      decision,
      prevHash,
      hash,
      signerKey: 'kb',
      signature: sign(null, Buffer.from(hash, 'hex'), broker.privateKey).toString('base64'),
    });
    prevHash = hash;
  }
  return out;
}

describe('verifyReleaseLog', () => {
  it('accepts an intact log and names the first record a tamperer touched', () => {
    expect(verifyReleaseLog(log(5), keyFor)).toMatchObject({ ok: true, records: 5 });
    const cases: Array<[string, (l: ReleaseRecord[]) => void, object]> = [
      [
        'payload',
        (l) => (l[1].decision.granted = !l[1].decision.granted),
        { index: 1, seq: 2, reason: 'hash' },
      ],
      ['signature', (l) => (l[2].signature = l[1].signature), { seq: 3, reason: 'signature' }],
      ['swap', (l) => ([l[1], l[2]] = [l[2], l[1]]), { index: 1, seq: 3, reason: 'order' }],
      ['deletion', (l) => l.splice(2, 1), { index: 2, seq: 4, reason: 'gap' }],
      ['prev hash', (l) => (l[3].prevHash = l[1].hash), { seq: 4, reason: 'hash' }],
      ['not a record', (l) => (l[0] = { nope: true } as never), { index: 0, reason: 'malformed' }],
      [
        'foreign signer',
        (l) => {
          l[4].signerKey = 'op';
          l[4].signature = sign(null, Buffer.from(l[4].hash, 'hex'), other.privateKey).toString('base64');
        },
        { seq: 5, reason: 'signer' },
      ],
    ];
    for (const [name, tamper, failure] of cases) {
      const l = structuredClone(log(5));
      tamper(l);
      const v = verifyReleaseLog(l, keyFor);
      expect(v.ok, name).toBe(false);
      if (!v.ok) expect(v.failure, name).toMatchObject(failure);
    }
  });

  it('binds key, nonce and migration in REPORT_DATA (64 bytes; any change changes it)', () => {
    const [k, n] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    const rd = guestEvidenceReportData(k, n, 'mig-1');
    expect(rd).toHaveLength(64);
    expect(guestEvidenceReportData(k, n, 'mig-2').equals(rd)).toBe(false);
    expect(guestEvidenceReportData(Buffer.alloc(32, 3), n, 'mig-1').equals(rd)).toBe(false);
    expect(guestEvidenceReportData(k, Buffer.alloc(32, 3), 'mig-1').equals(rd)).toBe(false);
  });
});
