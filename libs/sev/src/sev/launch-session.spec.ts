import { describe, expect, it } from 'vitest';
import { syntheticChain } from './__fixtures__/chains.js';
import { readVector } from './__fixtures__/vectors.js';
import { decodeSevCertificate } from './sev-cert.js';
import { SevBadMeasurementError } from './errors.js';
import { openSevTransportSession } from './key-agreement.js';
import { openSevLaunchSecret } from './launch-secret.js';
import { SevLaunchStarted, startSevLaunch } from './launch-session.js';
import {
  computeSevLaunchDigest,
  computeSevLaunchMeasure,
  encodeSevMeasurementBlob,
  sevEsVmsaPages,
} from './measurement.js';
import { decodeSevPacketHeader } from './packet.js';
import { parseSevSecretTable, sevDiskPassphraseEntry } from './secret-table.js';
import { decodeSevSession } from './session.js';

const OVMF = readVector('sev/kat/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9');

describe('typed launch session (guest owner ↔ emulated firmware)', () => {
  const { chain, keys: platformKeys } = syntheticChain();
  const platform = { apiMajor: 1, apiMinor: 55, build: 7 };
  const digest = computeSevLaunchDigest({
    firmware: OVMF,
    vmsas: sevEsVmsaPages(readVector('sev/kat/sevctl/vmsa0.bin'), readVector('sev/kat/sevctl/vmsa1.bin'), 2),
  });

  /** What a firmware does between LAUNCH_START and LAUNCH_MEASURE, from QEMU's inputs. */
  function firmwareMeasure(started: SevLaunchStarted) {
    const q = started.qemuInputs();
    const godh = decodeSevCertificate(Buffer.from(q.dhCertBase64, 'base64'));
    const session = decodeSevSession(Buffer.from(q.sessionBase64, 'base64'));
    const keys = openSevTransportSession({
      privateKey: platformKeys.pdh,
      peer: godh,
      session,
      policy: q.policy,
    });
    const mnonce = Buffer.alloc(16, 0x42);
    const measure = computeSevLaunchMeasure({ ...platform, tik: keys.tik, policy: q.policy, digest, mnonce });
    return { keys, blob: encodeSevMeasurementBlob({ measure, mnonce }) };
  }

  it('start → measure → secret, and the firmware side recovers the passphrase', () => {
    const started = startSevLaunch({ pdh: chain.pdh, policy: { noDebug: true, encryptedState: true } });
    expect(started.policy).toBe(0x5);
    const fw = firmwareMeasure(started);
    const measured = started.verifyMeasurement(fw.blob, { digest, platform });
    const packet = measured.sealSecret([sevDiskPassphraseEntry('correct horse')]);
    const plain = openSevLaunchSecret({
      keys: fw.keys,
      measure: measured.measurement.measure,
      header: decodeSevPacketHeader(Buffer.from(packet.qmp['packet-header'], 'base64')),
      ciphertext: Buffer.from(packet.qmp.secret, 'base64'),
    });
    expect(Buffer.from(parseSevSecretTable(plain)[0].data).toString()).toBe('correct horse');
  });

  it('a launch of a different image (or a different platform version) is refused', () => {
    const started = startSevLaunch({ pdh: chain.pdh, policy: 0x1 });
    const fw = firmwareMeasure(started);
    const otherDigest = computeSevLaunchDigest({ firmware: OVMF });
    expect(() => started.verifyMeasurement(fw.blob, { digest: otherDigest, platform })).toThrow(
      SevBadMeasurementError,
    );
    expect(() => started.verifyMeasurement(fw.blob, { digest, platform: { ...platform, build: 8 } })).toThrow(
      SevBadMeasurementError,
    );
  });

  it('resumes from a snapshot', () => {
    const started = startSevLaunch({ pdh: chain.pdh, policy: 0x1 });
    const fw = firmwareMeasure(started);
    const resumed = new SevLaunchStarted(structuredClone(started.snapshot()));
    expect(resumed.verifyMeasurement(fw.blob, { digest, platform }).measurement.mnonce).toEqual(
      Uint8Array.from(Buffer.alloc(16, 0x42)),
    );
  });
});
