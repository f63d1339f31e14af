import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  createSevCertificate,
  decodeSevCertificate,
  encodeSevCertificate,
  SevAlgorithm,
  type SevCertificate,
  sevPublicKeyFromKeyObject,
  sevPublicKeysEqual,
  SevUsage,
  type SevUsageCode,
  signSevCertificate,
} from '@ccm/sev';
import { field, privateKeyPem, type StateFiles } from '../store/state-files.js';

/**
 * The platform's owner-side identity: OCA, PEK and PDH (the CEK is derived from the chip). A self-owned
 * platform holds its OCA private key; an externally owned one only the owner's OCA certificate. The
 * whole identity is one JSON file (0600) replaced atomically, so PEK_GEN never leaves a PDH signed by a
 * PEK that was not saved.
 */

/** A key the firmware holds, with its certificate. */
export interface HeldKey {
  readonly cert: SevCertificate;
  readonly key: KeyObject;
}

/** OCA, PEK, PDH and who owns the platform. */
export interface PlatformIdentity {
  readonly owner: 'self' | 'external';
  /** The OCA certificate; its private key only when self-owned. */
  readonly oca: { readonly cert: SevCertificate; readonly key?: KeyObject };
  readonly pek: HeldKey;
  readonly pdh: HeldKey;
}

/** API version written into certificates the firmware makes. */
export interface CertVersion {
  readonly apiMajor: number;
  readonly apiMinor: number;
}

/** Name of the identity file in the platform state directory. */
export const IDENTITY_FILE = 'identity.json';

const p384 = (): { publicKey: KeyObject; privateKey: KeyObject } =>
  generateKeyPairSync('ec', { namedCurve: 'P-384' });

function ecCert(usage: SevUsageCode, publicKey: KeyObject, version: CertVersion): SevCertificate {
  const algorithm = usage === SevUsage.PDH ? SevAlgorithm.ECDH_SHA256 : SevAlgorithm.ECDSA_SHA256;
  return createSevCertificate({
    usage,
    algorithm,
    publicKey: sevPublicKeyFromKeyObject(publicKey),
    ...version,
  });
}

/** Signing key of a held ECDSA key (every firmware signature is ECDSA P-384 over SHA-256). */
export function signerOf(usage: SevUsageCode, key: KeyObject) {
  return { usage, algorithm: SevAlgorithm.ECDSA_SHA256, privateKey: key } as const;
}

/** A fresh PDH signed by `pek` (PDH_GEN). */
export function generatePdh(pek: HeldKey, version: CertVersion): HeldKey {
  const pair = p384();
  const cert = signSevCertificate(
    ecCert(SevUsage.PDH, pair.publicKey, version),
    0,
    signerOf(SevUsage.PEK, pek.key),
  );
  return { cert, key: pair.privateKey };
}

/**
 * PEK_GEN (and PLATFORM_RESET): a new self-signed OCA, a PEK signed by it (SIG1) and by the CEK (SIG2),
 * and a new PDH. The platform becomes self-owned.
 */
export function generateSelfOwnedIdentity(cek: KeyObject, version: CertVersion): PlatformIdentity {
  const ocaPair = p384();
  const oca = signSevCertificate(
    ecCert(SevUsage.OCA, ocaPair.publicKey, version),
    0,
    signerOf(SevUsage.OCA, ocaPair.privateKey),
  );
  const pekPair = p384();
  let pekCert = signSevCertificate(
    ecCert(SevUsage.PEK, pekPair.publicKey, version),
    0,
    signerOf(SevUsage.OCA, ocaPair.privateKey),
  );
  pekCert = signSevCertificate(pekCert, 1, signerOf(SevUsage.CEK, cek));
  const pek = { cert: pekCert, key: pekPair.privateKey };
  return { owner: 'self', oca: { cert: oca, key: ocaPair.privateKey }, pek, pdh: generatePdh(pek, version) };
}

/** The unsigned PEK certificate PEK_CSR returns (both slots empty). */
export function pekSigningRequest(identity: PlatformIdentity): SevCertificate {
  const { pek } = identity;
  return createSevCertificate({
    usage: SevUsage.PEK,
    algorithm: pek.cert.algorithm,
    publicKey: pek.cert.publicKey,
    apiMajor: pek.cert.apiMajor,
    apiMinor: pek.cert.apiMinor,
  });
}

/** True when `cert` carries the same public key as the PEK the firmware holds. */
export function isCurrentPek(identity: PlatformIdentity, cert: SevCertificate): boolean {
  return sevPublicKeysEqual(identity.pek.cert.publicKey, cert.publicKey);
}

const b64 = (cert: SevCertificate): string => encodeSevCertificate(cert).toString('base64');

/** Saves the identity atomically (one file, mode 0600: it holds private keys). */
export function saveIdentity(files: StateFiles, identity: PlatformIdentity): void {
  files.writeJson(
    IDENTITY_FILE,
    {
      owner: identity.owner,
      oca: {
        cert: b64(identity.oca.cert),
        ...(identity.oca.key ? { key: privateKeyPem(identity.oca.key) } : {}),
      },
      pek: { cert: b64(identity.pek.cert), key: privateKeyPem(identity.pek.key) },
      pdh: { cert: b64(identity.pdh.cert), key: privateKeyPem(identity.pdh.key) },
    },
    { secret: true },
  );
}

/** Loads the identity; a malformed file is a {@link SevStateStoreError} (via `readJson`). */
export function loadIdentity(files: StateFiles, importKey: (pem: string) => KeyObject): PlatformIdentity {
  return files.readJson(IDENTITY_FILE, (value) => {
    const o = field.object(value, IDENTITY_FILE);
    const owner = field.string(o, 'owner');
    if (owner !== 'self' && owner !== 'external') throw new TypeError('owner must be self or external');
    const entry = (name: string) => field.object(o[name], name);
    const cert = (e: Record<string, unknown>) => decodeSevCertificate(field.base64(e, 'cert'));
    const held = (name: string): HeldKey => {
      const e = entry(name);
      return { cert: cert(e), key: importKey(field.string(e, 'key')) };
    };
    const ocaEntry = entry('oca');
    const ocaKey = typeof ocaEntry.key === 'string' ? importKey(ocaEntry.key) : undefined;
    if ((owner === 'self') !== (ocaKey !== undefined)) {
      throw new TypeError('a self-owned platform holds its OCA key, an externally owned one does not');
    }
    return { owner, oca: { cert: cert(ocaEntry), key: ocaKey }, pek: held('pek'), pdh: held('pdh') };
  });
}
