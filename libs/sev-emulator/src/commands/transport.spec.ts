import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeSevCertificate,
  decodeSevPacketHeader,
  decodeSevSession,
  encodeQemuSevMigrationParameters,
  encodeSevCertificate,
  encodeSevPacketHeader,
  encodeSevSession,
  SevPolicyBit,
  SevReceiveSession,
  SevSendSession,
  startSevSend,
} from '@ccm/sev';
import { failure, runningGuest, softwareSource, softwareTarget, targetOf } from '../__fixtures__/guests.js';
import { testImage } from '../__fixtures__/bytes.js';
import { createTestBed, type TestBed } from '../__fixtures__/testbed.js';
import type { SevGuest } from '../guest/sev-guest.js';
import { LabAuthority } from '../lab/lab-authority.js';
import { SoftwareSecureProcessor } from '../processor.js';
import { sendTargetFromQemu } from './send-target.js';

const MIB = 1 << 20;

/** Sends every 4 KiB page of [0, bytes) from `src` to `dst` and finishes both sides. */
function migrate(
  a: SoftwareSecureProcessor,
  g: SevGuest,
  b: SoftwareSecureProcessor,
  bytes: number,
): SevGuest {
  const { session, policy } = a.sendStart(g, targetOf(b));
  const incoming = b.receiveStart({
    policy,
    sourcePdh: a.pdhCertExport().pdh,
    session,
    memoryBytes: g.host.size,
  });
  b.activate(incoming);
  for (let gpa = 0; gpa < bytes; gpa += 4096) {
    const packet = a.sendUpdateData(g, gpa, 4096);
    b.receiveUpdateData(incoming, { ...packet, gpa });
  }
  for (let vcpu = 0; vcpu < g.vcpuCount; vcpu++) {
    b.receiveUpdateVmsa(incoming, { ...a.sendUpdateVmsa(g, vcpu), vcpu });
  }
  a.sendFinish(g);
  b.receiveFinish(incoming);
  return incoming;
}

describe('migration transport between emulated platforms', () => {
  let bed: TestBed;
  let a: SoftwareSecureProcessor;
  let b: SoftwareSecureProcessor;
  let c: SoftwareSecureProcessor;
  beforeAll(async () => {
    bed = await createTestBed();
    [a, b, c] = ['a', 'b', 'c'].map((n) => bed.host(n));
  });
  afterAll(() => bed.cleanup());

  it('platform B receives exactly the guest pages A sent, and A ends SENT', () => {
    const image = testImage(256 * 1024);
    const g = runningGuest(a, { image, memoryBytes: MIB });
    g.inGuest().memory.write(300 * 1024, Buffer.from('written by the running guest'));
    const moved = migrate(a, g, b, MIB);
    expect(moved.state).toBe('RUNNING');
    expect(g.state).toBe('SENT');
    const mem = moved.inGuest().memory;
    expect(mem.read(0, image.length).equals(image)).toBe(true);
    expect(mem.read(300 * 1024, 28).toString()).toBe('written by the running guest');
    expect(() => g.inGuest().memory.read(0, 16)).toThrow(
      expect.objectContaining({ code: 'INVALID_GUEST_STATE' }),
    );
    // the new context has its own VEK: same plaintext, different ciphertext on each host
    expect(moved.host.read(0, 4096).equals(g.host.read(0, 4096))).toBe(false);
  });

  it('SEV-ES: vCPU state (VMSAs) moves with SEND/RECEIVE_UPDATE_VMSA', () => {
    const vmsas = [testImage(4096, 5), testImage(4096, 6)];
    const g = runningGuest(a, { policy: SevPolicyBit.NODBG | SevPolicyBit.ES, vmsas });
    const moved = migrate(a, g, b, 4096);
    expect(moved.kind).toBe('sev-es');
    expect(moved.vcpuCount).toBe(2);
    const nonEs = runningGuest(a);
    const { session, policy } = a.sendStart(nonEs, targetOf(b));
    const incoming = b.receiveStart({ policy, sourcePdh: a.pdhCertExport().pdh, session, memoryBytes: MIB });
    b.activate(incoming);
    expect(failure(() => a.sendUpdateVmsa(nonEs, 0)).code).toBe('INVALID_PARAM');
    const page = a.sendUpdateData(nonEs, 0, 4096);
    expect(failure(() => b.receiveUpdateVmsa(incoming, { ...page, vcpu: 0 })).code).toBe('POLICY_FAILURE');
  });

  it('a session made for B cannot be received by C (WRAP_MAC: BAD_MEASUREMENT)', () => {
    const g = runningGuest(a);
    const { session, policy } = a.sendStart(g, targetOf(b));
    expect(
      failure(() => c.receiveStart({ policy, sourcePdh: a.pdhCertExport().pdh, session, memoryBytes: MIB })),
    ).toMatchObject({
      code: 'BAD_MEASUREMENT',
      reason: 'wrap-mac',
    });
    expect(
      failure(() =>
        b.receiveStart({
          policy: policy | SevPolicyBit.NOKS,
          sourcePdh: a.pdhCertExport().pdh,
          session,
          memoryBytes: MIB,
        }),
      ),
    ).toMatchObject({
      code: 'POLICY_FAILURE',
      reason: 'policy-mac',
    });
    a.sendCancel(g);
    expect(g.state).toBe('RUNNING');
  });

  it('rejects a packet altered in transit and a replayed one; a packet of another session fails its MAC', () => {
    const g = runningGuest(a, { image: testImage(8192) });
    const { session, policy } = a.sendStart(g, targetOf(b));
    const incoming = b.receiveStart({ policy, sourcePdh: a.pdhCertExport().pdh, session, memoryBytes: MIB });
    b.activate(incoming);
    const packet = a.sendUpdateData(g, 0, 4096);
    const data = Buffer.from(packet.data);
    data[100] ^= 0x40;
    expect(
      failure(() => b.receiveUpdateData(incoming, { header: packet.header, data, gpa: 0 })),
    ).toMatchObject({
      code: 'BAD_MEASUREMENT',
      reason: 'packet-mac',
    });
    const header = Buffer.from(packet.header);
    header[10] ^= 1; // inside the IV
    expect(failure(() => b.receiveUpdateData(incoming, { header, data: packet.data, gpa: 0 })).reason).toBe(
      'packet-mac',
    );
    b.receiveUpdateData(incoming, { ...packet, gpa: 0 });
    expect(failure(() => b.receiveUpdateData(incoming, { ...packet, gpa: 4096 }))).toMatchObject({
      code: 'BAD_MEASUREMENT',
      reason: 'replayed-iv',
    });
    a.sendCancel(g);
    a.sendStart(g, targetOf(b));
    const fromOtherSession = a.sendUpdateData(g, 4096, 4096);
    expect(failure(() => b.receiveUpdateData(incoming, { ...fromOtherSession, gpa: 4096 })).reason).toBe(
      'packet-mac',
    );
    expect(
      failure(() => b.receiveUpdateData(incoming, { header: Buffer.alloc(51), data: packet.data, gpa: 0 }))
        .code,
    ).toBe('INVALID_LENGTH');
  });

  it('a libs/sev transport session (SevSendSession) for B’s PDH lets B receive; startSevSend for C’s PDH fails on B', () => {
    const source = softwareSource();
    const trust = bed.lab.trustAnchors().sevExtraRoots;
    const target = (p: SoftwareSecureProcessor) => ({ ...p.certificateChain() });
    const send = SevSendSession.start({
      sourcePdhPrivateKey: source.key,
      policy: 0x1,
      context: { target: target(b) },
      chainOptions: { extraRoots: trust },
    });
    const incoming = b.receiveStart({
      policy: 0x1,
      sourcePdh: encodeSevCertificate(source.pdh),
      session: encodeSevSession(send.session),
      memoryBytes: MIB,
    });
    b.activate(incoming);
    const pages = [testImage(4096, 3), testImage(4096, 4)];
    pages.forEach((page, i) => {
      const sealed = send.sealUpdate(page);
      b.receiveUpdateData(incoming, {
        header: encodeSevPacketHeader(sealed.header),
        data: sealed.ciphertext,
        gpa: i * 4096,
      });
    });
    b.receiveFinish(incoming);
    expect(incoming.inGuest().memory.read(0, 8192)).toEqual(Buffer.concat(pages));

    const forC = startSevSend({
      sourcePdhPrivateKey: source.key,
      policy: 0x1,
      context: { target: target(c) },
      chainOptions: { extraRoots: trust },
    });
    expect(
      failure(() =>
        b.receiveStart({ policy: 0x1, sourcePdh: source.pdh, session: forC.sessionBytes, memoryBytes: MIB }),
      ).code,
    ).toBe('BAD_MEASUREMENT');
  });

  it('emits libs/sev packets: a libs/sev SevReceiveSession holding the target PDH key opens them', () => {
    const g = runningGuest(a, { image: testImage(8192, 9) });
    const sw = softwareTarget();
    const { session, policy } = a.sendStart(g, sw.target);
    const receive = SevReceiveSession.start({
      targetPdhPrivateKey: sw.pdhKey,
      sourcePdh: decodeSevCertificate(a.pdhCertExport().pdh),
      session: decodeSevSession(session),
      policy,
    });
    const packet = a.sendUpdateData(g, 4096, 4096);
    expect(receive.openUpdate(decodeSevPacketHeader(packet.header), packet.data)).toEqual(
      testImage(8192, 9).subarray(4096),
    );
  });

  it('enforces the guest policy and the target chain at SEND_START', () => {
    const nosend = runningGuest(a, { policy: SevPolicyBit.NOSEND });
    expect(failure(() => a.sendStart(nosend, targetOf(b)))).toMatchObject({
      code: 'POLICY_FAILURE',
      reason: 'nosend',
    });
    const domain = runningGuest(a, { policy: SevPolicyBit.DOMAIN });
    expect(failure(() => a.sendStart(domain, targetOf(b)))).toMatchObject({
      code: 'POLICY_FAILURE',
      reason: 'domain',
    });
    const sev = runningGuest(a, { policy: SevPolicyBit.SEV });
    expect(failure(() => a.sendStart(sev, targetOf(b, false)))).toMatchObject({
      code: 'INVALID_CERTIFICATE',
      reason: 'amd-certs-missing',
    });
    expect(failure(() => a.sendStart(sev, softwareTarget().target)).code).toBe('INVALID_CERTIFICATE');
    expect(
      a.sendStart(sev, sendTargetFromQemu(encodeQemuSevMigrationParameters(b.certificateChain()))).session,
    ).toHaveLength(128);
    const plain = runningGuest(a);
    const swapped = { ...targetOf(b), pdh: targetOf(c).pdh };
    expect(failure(() => a.sendStart(plain, swapped)).code).toBe('BAD_SIGNATURE');
    expect(failure(() => a.sendStart(plain, { ...targetOf(b), platformCerts: Buffer.alloc(100) })).code).toBe(
      'INVALID_LENGTH',
    );
    const newer = runningGuest(a, { policy: (1 << 16) | (55 << 24) });
    const old = bed.host('old-firmware', { apiMajor: 1, apiMinor: 40 });
    expect(failure(() => a.sendStart(newer, targetOf(old)))).toMatchObject({
      code: 'POLICY_FAILURE',
      reason: 'api-version',
    });
    expect(a.sendStart(newer, targetOf(b)).policy).toBe((1 << 16) | (55 << 24));
  });

  it('a target endorsed by another lab is accepted under the SEV policy only when that lab is trusted', async () => {
    const otherLab = await LabAuthority.create(bed.dir('lab-2'), { rsaBits: 2048 });
    const foreign = SoftwareSecureProcessor.create(bed.dir('foreign'), { lab: otherLab });
    foreign.init();
    const g = runningGuest(a, { policy: SevPolicyBit.SEV });
    expect(failure(() => a.sendStart(g, targetOf(foreign)))).toMatchObject({
      code: 'INVALID_CERTIFICATE',
      reason: 'untrusted-chain',
    });
    // without the SEV bit the firmware does not consult AMD_CERT (the key broker vets the chain)
    expect(a.sendStart(runningGuest(a), targetOf(foreign)).session).toHaveLength(128);
    // the same host, reopened with the other lab among its trusted roots
    const trusting = SoftwareSecureProcessor.open(a.stateDir, { trust: otherLab.trustAnchors() });
    trusting.init();
    const g2 = runningGuest(trusting, { policy: SevPolicyBit.SEV });
    expect(trusting.sendStart(g2, targetOf(foreign)).session).toHaveLength(128);
  });
});
