import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeSevCertificate, SevPolicyBit, startSevLaunch } from '@ccm/sev';
import { failure, runningGuest, targetOf } from '../__fixtures__/guests.js';
import { launchOvmfGuest, type LaunchedGuest } from '../__fixtures__/launch.js';
import { createTestBed, type TestBed } from '../__fixtures__/testbed.js';
import { isSevGuestContextError, type SevGuestContextFault } from '../errors.js';
import { SoftwareSecureProcessor } from '../processor.js';
import { readGuestContextFile, writeGuestContextFile } from '../store/context-file.js';
import { statSync } from 'node:fs';
import { GUEST_CONTEXT_HEADER_SIZE } from './guest-context.js';

/**
 * Guest contexts kept outside the firmware: what a restarted hypervisor process gets back is the same
 * context (state, handle, ASID, launch keys and MEASURE, memory), and anything that is not a context
 * this chip sealed is refused with a typed reason.
 */
describe('guest context export and import', () => {
  let bed: TestBed;
  let a: SoftwareSecureProcessor;
  let b: SoftwareSecureProcessor;
  beforeAll(async () => {
    bed = await createTestBed();
    [a, b] = ['a', 'b'].map((n) => bed.host(n));
  });
  afterAll(() => bed.cleanup());

  /** The platform in `a`'s state dir opened afresh, as by a restarted agent: no guests. */
  const restarted = (): SoftwareSecureProcessor => {
    const sp = SoftwareSecureProcessor.open(bed.dir('a'));
    sp.init();
    return sp;
  };
  const platform = (sp: SoftwareSecureProcessor) => {
    const s = sp.platformStatus();
    return { apiMajor: s.apiMajor, apiMinor: s.apiMinor, build: s.build };
  };
  const secretPacket = (launched: LaunchedGuest, secret: Buffer) => {
    const packet = launched.owner
      .verifyMeasurement(launched.measurement.blob, {
        digest: launched.expectedDigest,
        platform: platform(a),
      })
      .sealSecret(secret);
    return { header: Buffer.from(packet.qmp['packet-header'], 'base64'), data: packet.ciphertext };
  };
  /** LAUNCH_START inputs of a policy-0 guest from a libs/sev owner, for `sp`. */
  const launchInputs = (sp: SoftwareSecureProcessor) => {
    const q = startSevLaunch({ pdh: decodeSevCertificate(sp.pdhCertExport().pdh), policy: 0 }).qemuInputs();
    return {
      policy: 0,
      godh: Buffer.from(q.dhCertBase64, 'base64'),
      session: Buffer.from(q.sessionBase64, 'base64'),
    };
  };
  const refusal = (sp: SoftwareSecureProcessor, bytes: Uint8Array) => {
    const err = failure(() => sp.importGuest(bytes));
    if (!isSevGuestContextError(err)) throw new Error(`expected a guest context error, got ${err.message}`);
    return err;
  };

  it('a measured guest comes back in LSECRET with its handle, ASID and MEASURE: the owner’s secret, FINISH and SEND_START work', () => {
    const launched = launchOvmfGuest(a, { policy: SevPolicyBit.NODBG, kernel: true });
    const before = a.guestStatus(launched.guest);
    const sealed = a.exportGuest(launched.guest);

    const sp = restarted();
    const guest = sp.importGuest(sealed);
    expect(sp.guestStatus(guest)).toEqual(before);
    expect(guest.state).toBe('LSECRET');
    // The packet's MAC binds the MEASURE taken before the export: it verifies only if MEASURE is identical.
    const secret = Buffer.from('the disk key, 32 bytes long ....');
    sp.launchSecret(guest, { ...secretPacket(launched, secret), gpa: launched.secretGpa });
    // Memory came back too: what was measured reads the same from the host side on both.
    expect(guest.host.read(launched.secretGpa - 4096, 4096)).toEqual(
      launched.guest.host.read(launched.secretGpa - 4096, 4096),
    );
    sp.launchFinish(guest);
    expect(guest.inGuest().memory.read(launched.secretGpa, secret.length)).toEqual(secret);
    expect(sp.sendStart(guest, targetOf(b)).session).toHaveLength(128);
    expect(guest.state).toBe('SUPDATE');
  });

  it('after LAUNCH_SECRET the secret and the replay state survive; a running guest stays RUNNING', () => {
    const launched = launchOvmfGuest(a, { policy: 0 });
    const secret = Buffer.alloc(32, 0x5a);
    const packet = { ...secretPacket(launched, secret), gpa: launched.secretGpa };
    a.launchSecret(launched.guest, packet);
    const sp = restarted();
    const guest = sp.importGuest(a.exportGuest(launched.guest));
    expect(failure(() => sp.launchSecret(guest, packet))).toMatchObject({ reason: 'replayed-iv' });
    sp.launchFinish(guest);
    expect(guest.inGuest().memory.read(launched.secretGpa, 32)).toEqual(secret);
    const again = restarted().importGuest(sp.exportGuest(guest));
    expect(again.state).toBe('RUNNING');
    expect(again.inGuest().memory.read(launched.secretGpa, 32)).toEqual(secret);
  });

  it('an SUPDATE guest comes back in SUPDATE with its transport keys: the target still opens its packets', () => {
    const image = Buffer.alloc(8192, 0x42);
    const g = runningGuest(a, { image });
    const { session, policy } = a.sendStart(g, targetOf(b));
    const sp = restarted();
    const guest = sp.importGuest(a.exportGuest(g));
    expect(guest.state).toBe('SUPDATE');
    const incoming = b.receiveStart({
      policy,
      sourcePdh: sp.pdhCertExport().pdh,
      session,
      memoryBytes: g.host.size,
    });
    b.activate(incoming);
    b.receiveUpdateData(incoming, { ...sp.sendUpdateData(guest, 0, 8192), gpa: 0 });
    sp.sendFinish(guest);
    b.receiveFinish(incoming);
    expect(incoming.inGuest().memory.read(0, 8192)).toEqual(image);
    expect(restarted().importGuest(sp.exportGuest(guest)).state).toBe('SENT');
  });

  it('a NOSEND guest is still refused by SEND_START after the round trip', () => {
    const g = runningGuest(a, { policy: SevPolicyBit.NOSEND });
    const before = failure(() => a.sendStart(g, targetOf(b)));
    const sp = restarted();
    const guest = sp.importGuest(a.exportGuest(g));
    expect(guest.policy).toBe(SevPolicyBit.NOSEND);
    const after = failure(() => sp.sendStart(guest, targetOf(b)));
    expect(after).toMatchObject({ code: 'POLICY_FAILURE', command: 'SEND_START', reason: before.reason });
    expect(guest.state).toBe('RUNNING');
  });

  it('refuses LUPDATE (GCTX.LD is a running hash) and unknown handles', () => {
    const g = a.launchStart({ ...launchInputs(a), memoryBytes: 1 << 20 });
    expect(failure(() => a.exportGuest(g))).toMatchObject({
      reason: 'not-exportable',
      code: 'INVALID_GUEST_STATE',
    });
    expect(failure(() => a.exportGuest(9999)).code).toBe('INVALID_GUEST');
  });

  describe('refusals', () => {
    let sealed: Buffer;
    let asid: number;
    beforeAll(() => {
      const g = runningGuest(a, { image: Buffer.alloc(4096, 1) });
      asid = a.guestStatus(g).asid;
      sealed = a.exportGuest(g);
    });
    const flipped = (offset: number): Buffer => {
      const copy = Buffer.from(sealed);
      copy[offset] ^= 0x01;
      return copy;
    };

    const withLength = (delta: number): Buffer => {
      const copy = Buffer.from(sealed);
      copy.writeUInt32LE(copy.readUInt32LE(56) + delta, 56);
      return copy;
    };

    it.each<[string, () => Buffer, SevGuestContextFault, string]>([
      ['magic', () => flipped(0), 'malformed', 'INVALID_PARAM'],
      ['version', () => flipped(8), 'version', 'UNSUPPORTED'],
      ['reserved field', () => flipped(10), 'malformed', 'INVALID_PARAM'],
      ['platform tag', () => flipped(20), 'foreign-platform', 'SECURE_DATA_INVALID'],
      ['nonce', () => flipped(50), 'integrity', 'SECURE_DATA_INVALID'],
      ['length (announcing more)', () => withLength(+1), 'truncated', 'INVALID_LENGTH'],
      ['length (announcing less)', () => withLength(-1), 'malformed', 'INVALID_PARAM'],
      ['body', () => flipped(GUEST_CONTEXT_HEADER_SIZE + 100), 'integrity', 'SECURE_DATA_INVALID'],
      ['tag', () => flipped(sealed.length - 1), 'integrity', 'SECURE_DATA_INVALID'],
      ['truncated by one byte', () => sealed.subarray(0, sealed.length - 1), 'truncated', 'INVALID_LENGTH'],
      ['truncated inside the header', () => sealed.subarray(0, 30), 'truncated', 'INVALID_LENGTH'],
      ['a trailing byte', () => Buffer.concat([sealed, Buffer.of(0)]), 'malformed', 'INVALID_PARAM'],
      ['empty', () => Buffer.alloc(0), 'truncated', 'INVALID_LENGTH'],
    ])('a changed %s is refused', (_what, bytes, fault, code) => {
      expect(refusal(restarted(), bytes())).toMatchObject({ fault, code });
    });

    it('a context from another chip is refused as foreign', () => {
      const foreign = b.exportGuest(runningGuest(b));
      expect(refusal(restarted(), foreign)).toMatchObject({
        fault: 'foreign-platform',
        code: 'SECURE_DATA_INVALID',
      });
    });

    it('a second import of the same context is refused: its handle is in use', () => {
      const sp = restarted();
      sp.importGuest(sealed);
      expect(refusal(sp, sealed)).toMatchObject({ fault: 'handle-in-use', code: 'INVALID_GUEST' });
    });

    it('a context whose ASID another guest holds is refused', () => {
      const sp = restarted();
      const other = sp.launchStart({ ...launchInputs(sp), memoryBytes: 1 << 20 });
      sp.activate(other, asid);
      expect(refusal(sp, sealed)).toMatchObject({ fault: 'asid-in-use', code: 'ASID_OWNED' });
    });

    it('an UNINIT platform takes no context', () => {
      expect(refusal(SoftwareSecureProcessor.open(bed.dir('a')), sealed)).toMatchObject({
        fault: 'platform-state',
        code: 'INVALID_PLATFORM_STATE',
      });
    });
  });

  it('the context file is written atomically with mode 0600 and read back; a missing one reads as undefined', () => {
    const path = bed.dir('ctx/guest.ctx');
    expect(readGuestContextFile(path)).toBeUndefined();
    const sealed = a.exportGuest(runningGuest(a));
    writeGuestContextFile(path, sealed);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readGuestContextFile(path)).toEqual(sealed);
  });
});
