import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  createGodhCertificate,
  createSevCertificate,
  decodeSevCertificate,
  encodeSevCertificate,
  encodeSevPlatformCertChain,
  SevAlgorithm,
  type SevCertificate,
  sevPublicKeyFromKeyObject,
  SevUsage,
  type SevUsageCode,
  signSevCertificate,
  startSevLaunch,
} from '@ccm/sev';
import type { SevGuest } from '../guest/sev-guest.js';
import type { SoftwareSecureProcessor } from '../processor.js';
import type { SendStartTarget } from '../commands/send-target.js';
import { isSevFirmwareError, type SevFirmwareError } from '../errors.js';

/** Runs `fn` and returns the firmware error it threw (fails the test when it does not throw one). */
export function failure(fn: () => unknown): SevFirmwareError {
  try {
    fn();
  } catch (err) {
    if (isSevFirmwareError(err)) return err;
    throw err;
  }
  throw new Error('expected a firmware error');
}

/** Launches a small guest with libs/sev as the owner, loads `image` at gpa 0 and runs it. */
export function runningGuest(
  sp: SoftwareSecureProcessor,
  options: {
    readonly policy?: number;
    readonly memoryBytes?: number;
    readonly image?: Uint8Array;
    readonly vmsas?: readonly Uint8Array[];
  } = {},
): SevGuest {
  const policy = options.policy ?? 0x1;
  const pdh = decodeSevCertificate(sp.pdhCertExport().pdh);
  const inputs = startSevLaunch({ pdh, policy }).qemuInputs();
  const guest = sp.launchStart({
    policy,
    godh: Buffer.from(inputs.dhCertBase64, 'base64'),
    session: Buffer.from(inputs.sessionBase64, 'base64'),
    memoryBytes: options.memoryBytes ?? 1 << 20,
  });
  sp.activate(guest);
  if (options.image) {
    guest.host.write(0, options.image);
    sp.launchUpdateData(guest, 0, options.image.length);
  }
  for (const vmsa of options.vmsas ?? []) sp.launchUpdateVmsa(guest, vmsa);
  sp.launchMeasure(guest);
  sp.launchFinish(guest);
  return guest;
}

/** SEND_START's target buffers for `target` (its PDH_CERT_EXPORT plus, optionally, its ASK ‖ ARK). */
export function targetOf(target: SoftwareSecureProcessor, withAmd = true): SendStartTarget {
  const { pdh, certChain } = target.pdhCertExport();
  return { pdh, platformCerts: certChain, ...(withAmd ? { amdCerts: target.amdCertChain() } : {}) };
}

/**
 * A platform made of bare libs/sev parts (no emulator): self-made CEK/OCA/PEK/PDH with their private
 * keys, so a test can act as real firmware on the other end with libs/sev's typed sessions.
 */
export function softwareTarget(): {
  readonly target: SendStartTarget;
  readonly pdhKey: KeyObject;
  readonly pdh: SevCertificate;
} {
  const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const [cek, oca, pek, pdh] = [ec(), ec(), ec(), ec()];
  const cert = (usage: SevUsageCode, key: KeyObject, algorithm: number = SevAlgorithm.ECDSA_SHA256) =>
    createSevCertificate({
      usage,
      algorithm: algorithm as 0x2,
      publicKey: sevPublicKeyFromKeyObject(key),
      apiMajor: 1,
      apiMinor: 55,
    });
  const signer = (usage: SevUsageCode, privateKey: KeyObject) => ({
    usage,
    algorithm: SevAlgorithm.ECDSA_SHA256,
    privateKey,
  });
  const ocaCert = signSevCertificate(
    cert(SevUsage.OCA, oca.publicKey),
    0,
    signer(SevUsage.OCA, oca.privateKey),
  );
  const cekCert = cert(SevUsage.CEK, cek.publicKey);
  let pekCert = signSevCertificate(
    cert(SevUsage.PEK, pek.publicKey),
    0,
    signer(SevUsage.OCA, oca.privateKey),
  );
  pekCert = signSevCertificate(pekCert, 1, signer(SevUsage.CEK, cek.privateKey));
  const pdhCert = signSevCertificate(
    cert(SevUsage.PDH, pdh.publicKey, SevAlgorithm.ECDH_SHA256),
    0,
    signer(SevUsage.PEK, pek.privateKey),
  );
  return {
    target: {
      pdh: encodeSevCertificate(pdhCert),
      platformCerts: encodeSevPlatformCertChain({ pek: pekCert, oca: ocaCert, cek: cekCert }),
    },
    pdhKey: pdh.privateKey,
    pdh: pdhCert,
  };
}

/** A source "platform" for libs/sev's SevSendSession: a P-384 key and its PDH-usage certificate. */
export function softwareSource(): { readonly key: KeyObject; readonly pdh: SevCertificate } {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  return { key: pair.privateKey, pdh: createGodhCertificate(pair.publicKey) };
}
