import { constants, createHash, type KeyObject, sign, X509Certificate } from 'node:crypto';
import {
  bitString,
  boolean,
  explicit,
  integer,
  nullValue,
  octetString,
  oid,
  sequence,
  set,
  time,
  utf8String,
} from './der.js';

/**
 * Issues X.509 v3 certificates signed the way AMD signs its SNP chain: RSASSA-PSS with SHA-384,
 * MGF1-SHA-384 and a 48-byte salt (spec 9.4/9.5). Used for the lab ARK, ASK and the emulated VCEKs.
 */

const OID = {
  rsassaPss: '1.2.840.113549.1.1.10',
  sha384: '2.16.840.1.101.3.4.2.2',
  mgf1: '1.2.840.113549.1.1.8',
  commonName: '2.5.4.3',
  organizationalUnit: '2.5.4.11',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  subjectKeyIdentifier: '2.5.29.14',
} as const;

/** PSS salt length of every signature in the chain (the SHA-384 output size). */
const PSS_SALT_LENGTH = 48;

/** A distinguished name: CN plus the optional organisation fields, most significant first. */
export interface X509Name {
  readonly commonName: string;
  readonly organization?: string;
  readonly organizationalUnit?: string;
}

/** One extension: `value` is the DER of the extension value (the content of extnValue). */
export interface X509Extension {
  readonly oid: string;
  readonly critical?: boolean;
  readonly value: Uint8Array;
}

/** What goes into a certificate; the issuer's private key signs it. */
export interface CertificateTemplate {
  readonly serial: bigint;
  readonly issuer: X509Name;
  readonly subject: X509Name;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subjectPublicKey: KeyObject;
  readonly extensions: readonly X509Extension[];
}

function encodeName(name: X509Name): Buffer {
  const rdn = (type: string, value: string): Buffer => set(sequence(oid(type), utf8String(value)));
  const parts: Buffer[] = [];
  if (name.organization !== undefined) parts.push(rdn(OID.organization, name.organization));
  if (name.organizationalUnit !== undefined) parts.push(rdn(OID.organizationalUnit, name.organizationalUnit));
  parts.push(rdn(OID.commonName, name.commonName));
  return sequence(...parts);
}

/** AlgorithmIdentifier of RSASSA-PSS / SHA-384 / MGF1-SHA-384 / salt 48 (RFC 4055). */
function pssAlgorithm(): Buffer {
  const sha384 = sequence(oid(OID.sha384), nullValue());
  return sequence(
    oid(OID.rsassaPss),
    sequence(
      explicit(0, sha384),
      explicit(1, sequence(oid(OID.mgf1), sha384)),
      explicit(2, integer(PSS_SALT_LENGTH)),
    ),
  );
}

function encodeExtension(ext: X509Extension): Buffer {
  const critical = ext.critical ? [boolean(true)] : [];
  return sequence(oid(ext.oid), ...critical, octetString(ext.value));
}

/** Signs `template` with the issuer's RSA private key and returns the parsed certificate. */
export function issueCertificate(template: CertificateTemplate, issuerKey: KeyObject): X509Certificate {
  const algorithm = pssAlgorithm();
  const spki = template.subjectPublicKey.export({ type: 'spki', format: 'der' });
  const tbs = sequence(
    explicit(0, integer(2)),
    integer(template.serial),
    algorithm,
    encodeName(template.issuer),
    sequence(time(template.notBefore), time(template.notAfter)),
    encodeName(template.subject),
    spki,
    explicit(3, sequence(...template.extensions.map(encodeExtension))),
  );
  const signature = sign('sha384', tbs, {
    key: issuerKey,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: PSS_SALT_LENGTH,
  });
  return new X509Certificate(sequence(tbs, algorithm, bitString(signature)));
}

/** basicConstraints (critical): a CA, optionally limited to `pathLength` CAs below it. */
export function basicConstraints(pathLength?: number): X509Extension {
  const len = pathLength === undefined ? [] : [integer(pathLength)];
  return { oid: OID.basicConstraints, critical: true, value: sequence(boolean(true), ...len) };
}

/** keyUsage (critical) of a CA: keyCertSign and cRLSign. */
export function caKeyUsage(): X509Extension {
  return { oid: OID.keyUsage, critical: true, value: bitString(Buffer.of(0x06), 1) };
}

/** subjectKeyIdentifier: SHA-1 of the subject public key bits (RFC 5280 method 1, over the SPKI). */
export function subjectKeyIdentifier(publicKey: KeyObject): X509Extension {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return { oid: OID.subjectKeyIdentifier, value: octetString(createHash('sha1').update(spki).digest()) };
}
