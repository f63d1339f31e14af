import { X509Certificate } from 'node:crypto';
import {
  childrenOf,
  contentOf,
  DER_TAG,
  type DerNode,
  decodeOid,
  decodeSmallUint,
  decodeTime,
  encodingOf,
  expectNode,
} from './der.js';
import { SnpCertificateError } from './errors.js';

/** A certificate as accepted by the SNP API: a parsed certificate, DER bytes, or one PEM block. */
export type SnpCertificateInput = X509Certificate | Uint8Array | string;

/** OIDs used in SNP certificates. */
export const X509_OID = {
  rsassaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
  sha384: '2.16.840.1.101.3.4.2.2',
  commonName: '2.5.4.3',
} as const;

/** RSASSA-PSS parameters (RFC 4055), defaults filled in. */
export interface PssParameters {
  readonly hashOid: string;
  readonly mgfOid: string;
  readonly mgfHashOid: string;
  readonly saltLength: number;
  readonly trailerField: number;
}

/** A signature AlgorithmIdentifier; `pss` is set for RSASSA-PSS. */
export interface SignatureAlgorithm {
  readonly oid: string;
  readonly pss?: PssParameters;
}

/** The parts of an X.509 certificate the SNP checks read, decoded from its DER. */
export interface CertificateFields {
  readonly x509: X509Certificate;
  readonly signatureAlgorithm: SignatureAlgorithm;
  /** The algorithm named inside TBSCertificate (must equal the outer one). */
  readonly tbsSignatureAlgorithm: SignatureAlgorithm;
  readonly issuerDer: Uint8Array;
  readonly subjectDer: Uint8Array;
  readonly issuerCommonName: string | undefined;
  readonly subjectCommonName: string | undefined;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Extension value octets by OID. */
  readonly extensions: ReadonlyMap<string, { readonly critical: boolean; readonly value: Uint8Array }>;
}

/** Parses a certificate input; anything unreadable becomes a {@link SnpCertificateError}. */
export function toX509(input: SnpCertificateInput, what: string): X509Certificate {
  if (input instanceof X509Certificate) return input;
  try {
    return new X509Certificate(typeof input === 'string' ? input : Buffer.from(input));
  } catch (cause) {
    throw new SnpCertificateError(`${what} is not an X.509 certificate`, { cause });
  }
}

/** Every certificate in a PEM bundle, in order (e.g. a KDS `cert_chain`: ASK or ASVK, then ARK). */
export function parsePemBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new SnpCertificateError('no PEM certificate block found');
  return blocks.map((b, i) => toX509(b, `PEM block ${i}`));
}

function parsePss(buf: Uint8Array, params: DerNode | undefined): PssParameters {
  // RFC 4055 defaults: SHA-1, MGF1-SHA-1, salt 20, trailer 1; AMD always sets the first three.
  const out: { -readonly [K in keyof PssParameters]: PssParameters[K] } = {
    hashOid: '1.3.14.3.2.26',
    mgfOid: X509_OID.mgf1,
    mgfHashOid: '1.3.14.3.2.26',
    saltLength: 20,
    trailerField: 1,
  };
  if (!params) return out;
  for (const field of childrenOf(buf, params)) {
    const inner = childrenOf(buf, field)[0];
    if (!inner) continue;
    switch (field.tag) {
      case DER_TAG.CONTEXT_0:
        out.hashOid = decodeOid(contentOf(buf, childrenOf(buf, inner)[0]));
        break;
      case DER_TAG.CONTEXT_0 + 1: {
        const [oid, hashAlg] = childrenOf(buf, inner);
        out.mgfOid = decodeOid(contentOf(buf, oid));
        if (hashAlg) out.mgfHashOid = decodeOid(contentOf(buf, childrenOf(buf, hashAlg)[0]));
        break;
      }
      case DER_TAG.CONTEXT_0 + 2:
        out.saltLength = decodeSmallUint(contentOf(buf, inner), 'PSS saltLength');
        break;
      case DER_TAG.CONTEXT_0 + 3:
        out.trailerField = decodeSmallUint(contentOf(buf, inner), 'PSS trailerField');
        break;
    }
  }
  return out;
}

function algorithm(buf: Uint8Array, node: DerNode): SignatureAlgorithm {
  const [oidNode, params] = childrenOf(buf, node);
  const oid = decodeOid(contentOf(buf, expectNode(buf, oidNode.start, DER_TAG.OID, 'algorithm OID')));
  return oid === X509_OID.rsassaPss ? { oid, pss: parsePss(buf, params) } : { oid };
}

function commonName(buf: Uint8Array, name: DerNode): string | undefined {
  for (const rdn of childrenOf(buf, name)) {
    for (const atv of childrenOf(buf, rdn)) {
      const [type, value] = childrenOf(buf, atv);
      if (decodeOid(contentOf(buf, type)) === X509_OID.commonName)
        return Buffer.from(contentOf(buf, value)).toString('utf8');
    }
  }
  return undefined;
}

function extensionsOf(buf: Uint8Array, wrapper: DerNode | undefined): CertificateFields['extensions'] {
  const map = new Map<string, { critical: boolean; value: Uint8Array }>();
  if (!wrapper) return map;
  for (const ext of childrenOf(buf, childrenOf(buf, wrapper)[0])) {
    const parts = childrenOf(buf, ext);
    const oid = decodeOid(contentOf(buf, parts[0]));
    const critical = parts.length === 3 && contentOf(buf, parts[1])[0] !== 0;
    const value = parts[parts.length - 1];
    if (value.tag !== DER_TAG.OCTET_STRING)
      throw new SnpCertificateError(`extension ${oid}: value is not an OCTET STRING`);
    map.set(oid, { critical, value: Uint8Array.from(contentOf(buf, value)) });
  }
  return map;
}

/** Decodes the fields SNP verification needs from a certificate's DER. */
export function certificateFields(input: SnpCertificateInput, what = 'certificate'): CertificateFields {
  const x509 = toX509(input, what);
  const buf = new Uint8Array(x509.raw);
  try {
    const cert = expectNode(buf, 0, DER_TAG.SEQUENCE, 'Certificate');
    const [tbs, sigAlg] = childrenOf(buf, cert);
    const t = childrenOf(buf, expectNode(buf, tbs.start, DER_TAG.SEQUENCE, 'TBSCertificate'));
    const i = t[0].tag === DER_TAG.CONTEXT_0 ? 1 : 0; // optional [0] version
    const [tbsAlg, issuer, validity, subject] = [t[i + 1], t[i + 2], t[i + 3], t[i + 4]];
    const [notBefore, notAfter] = childrenOf(buf, validity);
    return {
      x509,
      signatureAlgorithm: algorithm(buf, sigAlg),
      tbsSignatureAlgorithm: algorithm(buf, tbsAlg),
      issuerDer: Uint8Array.from(encodingOf(buf, issuer)),
      subjectDer: Uint8Array.from(encodingOf(buf, subject)),
      issuerCommonName: commonName(buf, issuer),
      subjectCommonName: commonName(buf, subject),
      notBefore: decodeTime(buf, notBefore),
      notAfter: decodeTime(buf, notAfter),
      extensions: extensionsOf(
        buf,
        t.find((n) => n.tag === DER_TAG.CONTEXT_0 + 3),
      ),
    };
  } catch (cause) {
    if (cause instanceof SnpCertificateError)
      throw new SnpCertificateError(`${what}: ${cause.detail}`, { cause });
    throw new SnpCertificateError(`${what}: unexpected structure`, { cause });
  }
}
