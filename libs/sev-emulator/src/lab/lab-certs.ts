import { type KeyObject, randomBytes, type X509Certificate } from 'node:crypto';
import {
  type AmdSigningKeyCertificate,
  type SnpGeneration,
  snpProductName,
  SevError,
  sevPublicKeyFromKeyObject,
  sevPublicKeysEqual,
  SevUsage,
  signAmdCertificate,
  verifyAmdCertificateSignature,
  amdCertificatePublicKey,
} from '@ccm/sev';
import { SevStateStoreError } from '../errors.js';
import type { StateFiles } from '../store/state-files.js';
import {
  basicConstraints,
  caKeyUsage,
  issueCertificate,
  subjectKeyIdentifier,
  type X509Name,
} from '../x509/certificate.js';

/** What names a lab's certificates: its product line and a random id that tells labs apart. */
export interface LabNames {
  readonly labId: string;
  readonly generation: SnpGeneration;
}

/** Organisation written into every lab certificate so nobody mistakes it for AMD's. */
export const LAB_ORGANIZATION = 'CCM emulator lab (not AMD)';

const YEAR_MS = 365.25 * 24 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;

/** Validity window starting a day ago (tolerates clock skew between test hosts). */
export function validity(years: number, now = new Date()): { notBefore: Date; notAfter: Date } {
  return {
    notBefore: new Date(now.getTime() - DAY_MS),
    notAfter: new Date(now.getTime() + years * YEAR_MS),
  };
}

const CN_PREFIX = { ARK: 'ARK', ASK: 'SEV', ASVK: 'SEV-VLEK' } as const;

/** Subject of the lab ARK (`ARK-<Product>`), the ASK (`SEV-<Product>`), the ASVK (`SEV-VLEK-<Product>`). */
export function labName(names: LabNames, role: 'ARK' | 'ASK' | 'ASVK'): X509Name {
  return {
    organization: LAB_ORGANIZATION,
    organizationalUnit: `lab ${names.labId}`,
    commonName: `${CN_PREFIX[role]}-${snpProductName(names.generation)}`,
  };
}

/** A lab ASVK (the VLEK signing key, pathlen 0, 25 years) as X.509, signed by the lab ARK. */
export function labAsvkCertificate(names: LabNames, asvk: KeyPair, arkKey: KeyObject): X509Certificate {
  return issueCertificate(
    {
      serial: BigInt(`0x${randomBytes(8).toString('hex')}`) | 1n,
      issuer: labName(names, 'ARK'),
      subject: labName(names, 'ASVK'),
      ...validity(25),
      subjectPublicKey: asvk.publicKey,
      extensions: [basicConstraints(0), caKeyUsage(), subjectKeyIdentifier(asvk.publicKey)],
    },
    arkKey,
  );
}

/** An ARK or ASK in AMD's signing-key certificate format, signed by `signer` (RSA-PSS per key size). */
export function labAmdCertificate(
  role: 'ARK' | 'ASK',
  publicKey: KeyObject,
  keyId: Uint8Array,
  certifyingId: Uint8Array,
  signer: KeyObject,
): AmdSigningKeyCertificate {
  const key = sevPublicKeyFromKeyObject(publicKey);
  if (key.kind !== 'rsa') throw new TypeError('lab ARK/ASK keys are RSA');
  return signAmdCertificate(
    {
      version: 1,
      keyId: Uint8Array.from(keyId),
      certifyingId: Uint8Array.from(certifyingId),
      usage: role === 'ARK' ? SevUsage.ARK : SevUsage.ASK,
      // AMD sets PUB_EXP_SIZE = MODULUS_SIZE in every real certificate (virtee requires it).
      publicExponentBits: key.modulusBits,
      modulusBits: key.modulusBits,
      publicExponent: key.exponent,
      modulus: key.modulus,
      signature: 0n,
    },
    signer,
  );
}

type KeyPair = { readonly publicKey: KeyObject; readonly privateKey: KeyObject };

/** The lab ARK (self-signed, 25 years) and ASK (pathlen 0, 25 years) as X.509. */
export function labX509Certificates(
  names: LabNames,
  ark: KeyPair,
  ask: KeyPair,
): { ark: X509Certificate; ask: X509Certificate } {
  const serial = (): bigint => BigInt(`0x${randomBytes(8).toString('hex')}`) | 1n;
  const arkName = labName(names, 'ARK');
  const arkCert = issueCertificate(
    {
      serial: serial(),
      issuer: arkName,
      subject: arkName,
      ...validity(25),
      subjectPublicKey: ark.publicKey,
      extensions: [basicConstraints(), caKeyUsage(), subjectKeyIdentifier(ark.publicKey)],
    },
    ark.privateKey,
  );
  const askCert = issueCertificate(
    {
      serial: serial(),
      issuer: arkName,
      subject: labName(names, 'ASK'),
      ...validity(25),
      subjectPublicKey: ask.publicKey,
      extensions: [basicConstraints(0), caKeyUsage(), subjectKeyIdentifier(ask.publicKey)],
    },
    ark.privateKey,
  );
  return { ark: arkCert, ask: askCert };
}

/**
 * Checks a loaded lab: ARK self-signed and ASK signed by it in both formats, and each private key
 * matching its certificates. Throws {@link SevStateStoreError} naming the first inconsistency.
 */
export function checkLabConsistency(
  files: StateFiles,
  lab: {
    readonly ark: AmdSigningKeyCertificate;
    readonly ask: AmdSigningKeyCertificate;
    readonly arkX509: X509Certificate;
    readonly askX509: X509Certificate;
    readonly arkKey: KeyObject;
    readonly askKey: KeyObject;
  },
): void {
  const fail = (detail: string, cause?: unknown): never => {
    throw new SevStateStoreError(files.dir, `inconsistent lab: ${detail}`, { cause });
  };
  try {
    verifyAmdCertificateSignature(lab.ark, lab.ark);
    verifyAmdCertificateSignature(lab.ask, lab.ark);
  } catch (cause) {
    if (cause instanceof SevError) fail('ARK/ASK signatures do not verify', cause);
    throw cause;
  }
  if (!lab.arkX509.verify(lab.arkX509.publicKey) || !lab.askX509.verify(lab.arkX509.publicKey)) {
    fail('X.509 ARK/ASK signatures do not verify');
  }
  const same = (key: KeyObject, cert: AmdSigningKeyCertificate, x509: X509Certificate): boolean =>
    sevPublicKeysEqual(sevPublicKeyFromKeyObject(key), amdCertificatePublicKey(cert)) &&
    sevPublicKeysEqual(sevPublicKeyFromKeyObject(x509.publicKey), amdCertificatePublicKey(cert));
  if (!same(lab.arkKey, lab.ark, lab.arkX509)) fail('ark.key.pem does not match the ARK certificates');
  if (!same(lab.askKey, lab.ask, lab.askX509)) fail('ask.key.pem does not match the ASK certificates');
}
