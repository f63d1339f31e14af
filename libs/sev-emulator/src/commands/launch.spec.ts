import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildSevKernelHashesTable,
  createSevTransportSession,
  decodeSevCertificate,
  encodeSevSession,
  createGodhCertificate,
  encodeSevCertificate,
  generateSevDhKeyPair,
  parseSevSecretTable,
  SevPolicyBit,
  sevDiskPassphraseEntry,
  sevEsVmsaPages,
  startSevLaunch,
  verifySevLaunchMeasurement,
} from '@ccm/sev';
import { GUEST_BYTES, launchOvmfGuest } from '../__fixtures__/launch.js';
import { testImage } from '../__fixtures__/bytes.js';
import { createTestBed, type TestBed } from '../__fixtures__/testbed.js';
import { SEVCTL } from '../__fixtures__/vectors.js';
import { failure } from '../__fixtures__/guests.js';
import type { SoftwareSecureProcessor } from '../processor.js';

const NODBG = SevPolicyBit.NODBG;
const ES = SevPolicyBit.ES;

describe('launch: libs/sev as the guest owner, the emulator as firmware', () => {
  let bed: TestBed;
  let sp: SoftwareSecureProcessor;
  beforeAll(async () => {
    bed = await createTestBed();
    sp = bed.host('launch');
  });
  afterAll(() => bed.cleanup());

  const platform = () => {
    const s = sp.platformStatus();
    return { apiMajor: s.apiMajor, apiMinor: s.apiMinor, build: s.build };
  };

  it('accepts a libs/sev session; the SEV measurement (OVMF + kernel hashes) verifies with libs/sev', () => {
    const launched = launchOvmfGuest(sp, { policy: NODBG, kernel: true });
    expect(launched.guest.state).toBe('LSECRET');
    const verdict = verifySevLaunchMeasurement(launched.measurement.blob, {
      ...platform(),
      tik: launched.owner.snapshot().keys.tik,
      policy: NODBG,
      digest: launched.expectedDigest,
    });
    expect(verdict.ok).toBe(true);
    expect(() =>
      launched.owner.verifyMeasurement(launched.measurement.blob, {
        digest: randomBytes(32),
        platform: platform(),
      }),
    ).toThrow(expect.objectContaining({ code: 'BAD_MEASUREMENT' }));
  });

  it('SEV-ES: four vCPUs of VMSAs are measured after the firmware and the measurement verifies', () => {
    const launched = launchOvmfGuest(sp, { policy: NODBG | ES, vcpus: 4 });
    expect(launched.guest.kind).toBe('sev-es');
    expect(launched.guest.vcpuCount).toBe(4);
    const measured = launched.owner.verifyMeasurement(launched.measurement.blob, {
      digest: launched.expectedDigest,
      platform: platform(),
    });
    expect(measured.measurement.mnonce).toEqual(new Uint8Array(launched.measurement.mnonce));
  });

  it('reproduces the sevctl known answers byte for byte (SEV, kernel hashes, SEV-ES ×4; fixed MNONCE)', () => {
    const kats = [
      {
        api: [1, 40, 40],
        policy: 3,
        vcpus: 0,
        kernel: false,
        mnonce: 'c313fab511c216b1505b1b2ea9903c40',
        blob: 'a0c0dec08a2e252a5ba4d4478fb324de9d3c1f674f65076c64c535e2a2329819c313fab511c216b1505b1b2ea9903c40',
      },
      {
        api: [1, 40, 40],
        policy: 3,
        vcpus: 0,
        kernel: true,
        mnonce: 'c313fab511c216b1505b1b2ea9903c40',
        blob: '8776ae61b5909d55bb1062d63781dff52374a0460c3d4dac2b86cb9de7d63f0bc313fab511c216b1505b1b2ea9903c40',
      },
      {
        api: [1, 49, 6],
        policy: 5,
        vcpus: 4,
        kernel: false,
        mnonce: '2dbe959f5d3164db528c6480008509f2',
        blob: 'fe8d27cc3284e5782d56751958f85479afd6658ad328b13147b282c2e31d6c072dbe959f5d3164db528c6480008509f2',
      },
    ];
    for (const [i, kat] of kats.entries()) {
      const mnonce = Buffer.from(kat.mnonce, 'hex');
      const host = bed.host(`kat-${i}`, {
        apiMajor: kat.api[0],
        apiMinor: kat.api[1],
        build: kat.api[2],
        random: (n) => (n === 16 ? mnonce : randomBytes(n)),
      });
      const godh = generateSevDhKeyPair();
      const pdh = decodeSevCertificate(host.pdhCertExport().pdh);
      const { session } = createSevTransportSession({
        privateKey: godh.privateKey,
        peer: pdh,
        policy: kat.policy,
        keys: { tek: randomBytes(16), tik: SEVCTL.tik() },
      });
      const guest = host.launchStart({
        policy: kat.policy,
        godh: encodeSevCertificate(createGodhCertificate(godh.publicKey)),
        session: encodeSevSession(session),
        memoryBytes: GUEST_BYTES,
      });
      host.activate(guest);
      const firmware = SEVCTL.ovmf();
      guest.host.write(0xfffff000, firmware);
      host.launchUpdateData(guest, 0xfffff000, firmware.length);
      if (kat.kernel) {
        const table = buildSevKernelHashesTable({
          kernel: SEVCTL.kernel(),
          initrd: SEVCTL.initrd(),
          cmdline: SEVCTL.cmdline,
        });
        guest.host.write(0x80cc00, table);
        host.launchUpdateData(guest, 0x80cc00, table.length);
      }
      const vmsas = kat.vcpus ? sevEsVmsaPages(SEVCTL.vmsa0(), SEVCTL.vmsa1(), kat.vcpus) : [];
      for (const vmsa of vmsas) {
        host.launchUpdateVmsa(guest, vmsa);
      }
      expect(host.launchMeasure(guest).blob.toString('hex')).toBe(kat.blob);
    }
  });

  it('a secret sealed by libs/sev lands in guest memory, readable only from inside the guest', () => {
    const launched = launchOvmfGuest(sp, { policy: NODBG });
    const measured = launched.owner.verifyMeasurement(launched.measurement.blob, {
      digest: launched.expectedDigest,
      platform: platform(),
    });
    const packet = measured.sealSecret([sevDiskPassphraseEntry('correct horse battery staple')]);
    sp.launchSecret(launched.guest, {
      header: Buffer.from(packet.qmp['packet-header'], 'base64'),
      data: packet.ciphertext,
      gpa: launched.secretGpa,
    });
    // the host sees only ciphertext where the secret went
    const hostView = launched.guest.host.read(launched.secretGpa, packet.ciphertext.length);
    expect(() => parseSevSecretTable(hostView)).toThrow();
    sp.launchFinish(launched.guest);
    const inGuest = launched.guest.inGuest().memory.read(launched.secretGpa, packet.ciphertext.length);
    const [entry] = parseSevSecretTable(inGuest);
    expect(Buffer.from(entry.data).toString()).toBe('correct horse battery staple');
  });

  it('refuses an altered, a replayed and a foreign-launch secret packet', () => {
    const a = launchOvmfGuest(sp, { policy: NODBG });
    const b = launchOvmfGuest(sp, { policy: NODBG });
    const sealFor = (l: typeof a) =>
      l.owner
        .verifyMeasurement(l.measurement.blob, { digest: l.expectedDigest, platform: platform() })
        .sealSecret(Buffer.alloc(32, 7));
    const packet = sealFor(a);
    const tampered = Buffer.from(packet.ciphertext);
    tampered[3] ^= 1;
    const altered = failure(() =>
      sp.launchSecret(a.guest, { header: packet.header, data: tampered, gpa: a.secretGpa }),
    );
    expect([altered.code, altered.reason]).toEqual(['BAD_MEASUREMENT', 'packet-mac']);
    sp.launchSecret(a.guest, { header: packet.header, data: packet.ciphertext, gpa: a.secretGpa });
    const replay = failure(() =>
      sp.launchSecret(a.guest, { header: packet.header, data: packet.ciphertext, gpa: a.secretGpa + 64 }),
    );
    expect([replay.code, replay.reason]).toEqual(['BAD_MEASUREMENT', 'replayed-iv']);
    const foreign = failure(() =>
      sp.launchSecret(b.guest, { header: packet.header, data: packet.ciphertext, gpa: b.secretGpa }),
    );
    expect(foreign.code).toBe('BAD_MEASUREMENT');
  });

  it('LAUNCH_UPDATE_DATA encrypts in place: the host reads ciphertext, the guest its plaintext', () => {
    const image = testImage(64 * 1024);
    const pdh = decodeSevCertificate(sp.pdhCertExport().pdh);
    const owner = startSevLaunch({ pdh, policy: 0 });
    const { dhCertBase64, sessionBase64 } = owner.qemuInputs();
    const guest = sp.launchStart({
      policy: 0,
      godh: Buffer.from(dhCertBase64, 'base64'),
      session: Buffer.from(sessionBase64, 'base64'),
      memoryBytes: 1 << 20,
    });
    guest.host.write(0x10000, image);
    expect(failure(() => sp.launchUpdateData(guest, 0x10000, image.length)).code).toBe('INACTIVE');
    sp.activate(guest);
    sp.launchUpdateData(guest, 0x10000, image.length);
    const seen = guest.host.read(0x10000, image.length);
    expect(seen.equals(image)).toBe(false);
    expect(guest.host.read(0x10000 + 4096, 4096).equals(seen.subarray(0, 4096))).toBe(false);
    expect(sp.dbgDecrypt(guest, 0x10000, image.length).equals(image)).toBe(true);
    sp.launchMeasure(guest);
    sp.launchFinish(guest);
    expect(guest.inGuest().memory.read(0x10000, image.length).equals(image)).toBe(true);
    expect(guest.inGuest().memory.isPrivate(0x10000, image.length)).toBe(true);
  });

  it('maps every refusal to its status code', () => {
    const pdh = decodeSevCertificate(sp.pdhCertExport().pdh);
    const owner = startSevLaunch({ pdh, policy: NODBG });
    const inputs = owner.qemuInputs();
    const start = (over: Partial<Parameters<SoftwareSecureProcessor['launchStart']>[0]> = {}, host = sp) =>
      host.launchStart({
        policy: NODBG,
        godh: Buffer.from(inputs.dhCertBase64, 'base64'),
        session: Buffer.from(inputs.sessionBase64, 'base64'),
        memoryBytes: 1 << 20,
        ...over,
      });
    const other = bed.host('other');
    expect(failure(() => start({}, other))).toMatchObject({ code: 'BAD_MEASUREMENT', reason: 'wrap-mac' });
    expect(failure(() => start({ policy: 0 }))).toMatchObject({
      code: 'POLICY_FAILURE',
      reason: 'policy-mac',
    });
    expect(failure(() => start({ policy: 1 << 6 })).code).toBe('INVALID_PARAM');
    expect(failure(() => start({ policy: NODBG | (2 << 16) })).code).toBe('POLICY_FAILURE');
    expect(failure(() => start({ godh: Buffer.alloc(100) })).code).toBe('INVALID_LENGTH');
    expect(failure(() => start({ session: Buffer.alloc(127) })).code).toBe('INVALID_LENGTH');
    expect(failure(() => start({ memoryBytes: 1000 })).code).toBe('INVALID_PARAM');
    const guest = start();
    sp.activate(guest);
    expect(failure(() => sp.launchUpdateData(guest, 8, 16)).code).toBe('INVALID_ADDRESS');
    expect(failure(() => sp.launchUpdateData(guest, 0, 15)).code).toBe('INVALID_LENGTH');
    expect(failure(() => sp.launchUpdateData(guest, (1 << 20) - 16, 32)).code).toBe('INVALID_ADDRESS');
    expect(failure(() => sp.launchUpdateVmsa(guest, Buffer.alloc(4096))).code).toBe('POLICY_FAILURE');
    expect(
      failure(() => sp.launchSecret(guest, { header: Buffer.alloc(52), data: Buffer.alloc(16), gpa: 0 }))
        .code,
    ).toBe('INVALID_GUEST_STATE');
    expect(failure(() => sp.launchFinish(guest)).code).toBe('INVALID_GUEST_STATE');
    expect(failure(() => sp.dbgDecrypt(guest, 0, 16)).code).toBe('POLICY_FAILURE');
    expect(
      failure(() => sp.sendStart(guest, { pdh: Buffer.alloc(0), platformCerts: Buffer.alloc(0) })).code,
    ).toBe('INVALID_GUEST_STATE');
    sp.launchMeasure(guest);
    expect(failure(() => sp.launchMeasure(guest)).code).toBe('INVALID_GUEST_STATE');
    expect(failure(() => sp.launchUpdateData(guest, 0, 16)).code).toBe('INVALID_GUEST_STATE');
    expect(failure(() => sp.launchFinish(12345)).code).toBe('INVALID_GUEST');
  });

  it('SEV-ES needs a platform initialised with SEV-ES; UNINIT refuses guest commands', () => {
    const host = bed.host('no-es', { init: false });
    const pdh = decodeSevCertificate(sp.pdhCertExport().pdh);
    const owner = startSevLaunch({ pdh, policy: ES });
    const inputs = owner.qemuInputs();
    const start = () =>
      host.launchStart({
        policy: ES,
        godh: Buffer.from(inputs.dhCertBase64, 'base64'),
        session: Buffer.from(inputs.sessionBase64, 'base64'),
        memoryBytes: 1 << 20,
      });
    expect(failure(start).code).toBe('INVALID_PLATFORM_STATE');
    host.init({ es: false });
    expect(failure(start)).toMatchObject({ code: 'POLICY_FAILURE', reason: 'es-not-initialised' });
  });

  it('NOKS forbids sharing a VEK; without it a second context shares the first one’s key', () => {
    const pdh = decodeSevCertificate(sp.pdhCertExport().pdh);
    const launchWith = (policy: number, shareKeyWith?: number) => {
      const inputs = startSevLaunch({ pdh, policy }).qemuInputs();
      return sp.launchStart({
        policy,
        godh: Buffer.from(inputs.dhCertBase64, 'base64'),
        session: Buffer.from(inputs.sessionBase64, 'base64'),
        memoryBytes: 1 << 20,
        shareKeyWith,
      });
    };
    const first = launchWith(0);
    const second = launchWith(0, first.handle);
    sp.activate(first);
    sp.activate(second);
    first.host.write(0, Buffer.alloc(16, 1));
    second.host.write(0, Buffer.alloc(16, 1));
    sp.launchUpdateData(first, 0, 16);
    sp.launchUpdateData(second, 0, 16);
    expect(first.host.read(0, 16)).toEqual(second.host.read(0, 16));
    const noKs = launchWith(SevPolicyBit.NOKS);
    expect(failure(() => launchWith(0, noKs.handle))).toMatchObject({ code: 'POLICY_FAILURE' });
  });
});
