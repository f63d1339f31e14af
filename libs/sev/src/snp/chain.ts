import { createHash, type KeyObject } from 'node:crypto';
import { bytesEqual } from './bytes.js';
import {
  AMD_TRUSTED_ARKS,
  SNP_CA_COMMON_NAME,
  SNP_CA_PSS_SALT_LENGTH,
  type SnpTrustedArks,
} from './amd-roots.js';
import { type SnpChainFailure, SnpChainError, type SnpChainLink } from './errors.js';
import { SNP_GENERATIONS, snpProductName, type SnpGeneration } from './generation.js';
import { P384_CURVE } from './signature.js';
import { readVekInfo, type SnpVekInfo, type SnpVekKind, vekKindOf } from './vek.js';
import {
  type CertificateFields,
  certificateFields,
  type SignatureAlgorithm,
  type SnpCertificateInput,
  X509_OID,
} from './x509.js';

/** An SNP certificate chain: ARK → ASK → VCEK, or ARK → ASVK → VLEK (the ASVK goes in `ask`). */
export interface SnpCertChain {
  readonly ark: SnpCertificateInput;
  readonly ask: SnpCertificateInput;
  readonly vek: SnpCertificateInput;
}

/** Options of {@link verifySnpCertChain}. */
export interface SnpChainOptions {
  /** Instant at which every certificate must be valid [the current time]. */
  readonly now?: Date;
  /** Skip notBefore/notAfter (e.g. for archived evidence) [false]. */
  readonly ignoreValidity?: boolean;
  /** Accepted roots [{@link AMD_TRUSTED_ARKS}]; the emulator passes its own. */
  readonly trustedArks?: SnpTrustedArks;
  /** Reject chains of any other product line. */
  readonly expectedGeneration?: SnpGeneration;
}

/** A chain that verified: its product line, the endorsement key and what its certificate says. */
export interface SnpChainSuccess {
  readonly ok: true;
  readonly generation: SnpGeneration;
  readonly vekKind: SnpVekKind;
  readonly vek: SnpVekInfo;
  readonly vekPublicKey: KeyObject;
}

/** A chain that did not verify: the first failing link and why. */
export interface SnpChainFailureVerdict {
  readonly ok: false;
  readonly link: SnpChainLink;
  readonly reason: SnpChainFailure;
  readonly error: SnpChainError;
  /** Known once the ARK was recognised. */
  readonly generation?: SnpGeneration;
}

/** Outcome of {@link verifySnpCertChain}. */
export type SnpChainVerdict = SnpChainSuccess | SnpChainFailureVerdict;

function fail(link: SnpChainLink, reason: SnpChainFailure, detail: string, cause?: unknown): never {
  throw new SnpChainError(link, reason, detail, cause === undefined ? undefined : { cause });
}

function fields(link: SnpChainLink, input: SnpCertificateInput): CertificateFields {
  try {
    return certificateFields(input, link.toUpperCase());
  } catch (cause) {
    return fail(link, 'malformed', 'certificate cannot be read', cause);
  }
}

function isAmdPss(a: SignatureAlgorithm): boolean {
  const p = a.pss;
  return (
    a.oid === X509_OID.rsassaPss &&
    p !== undefined &&
    p.hashOid === X509_OID.sha384 &&
    p.mgfOid === X509_OID.mgf1 &&
    p.mgfHashOid === X509_OID.sha384 &&
    p.saltLength === SNP_CA_PSS_SALT_LENGTH &&
    p.trailerField === 1
  );
}

/** Checks one certificate against its issuer: names, algorithm, signature, validity. */
function checkSignedBy(
  link: SnpChainLink,
  cert: CertificateFields,
  issuer: CertificateFields,
  opts: SnpChainOptions,
): void {
  if (!bytesEqual(cert.issuerDer, issuer.subjectDer)) {
    fail(
      link,
      'issuer-mismatch',
      `issued by "${cert.issuerCommonName ?? '?'}", not by "${issuer.subjectCommonName ?? '?'}"`,
    );
  }
  const algo = cert.signatureAlgorithm;
  if (!isAmdPss(algo) || JSON.stringify(algo) !== JSON.stringify(cert.tbsSignatureAlgorithm)) {
    fail(
      link,
      'bad-algorithm',
      `signature algorithm ${JSON.stringify(algo)} is not RSASSA-PSS/SHA-384/MGF1-SHA-384/salt 48`,
    );
  }
  const issuerKey = issuer.x509.publicKey;
  if (issuerKey.asymmetricKeyType !== 'rsa' && issuerKey.asymmetricKeyType !== 'rsa-pss') {
    fail(link, 'wrong-key-type', `issuer key is ${issuerKey.asymmetricKeyType ?? '?'}, not RSA`);
  }
  let ok = false;
  try {
    ok = cert.x509.verify(issuerKey);
  } catch (cause) {
    fail(link, 'bad-signature', 'signature check failed', cause);
  }
  if (!ok) fail(link, 'bad-signature', `not signed by "${issuer.subjectCommonName ?? '?'}"`);
  if (opts.ignoreValidity !== true) {
    const now = opts.now ?? new Date();
    if (now < cert.notBefore) fail(link, 'not-yet-valid', `valid from ${cert.notBefore.toISOString()}`);
    if (now > cert.notAfter) fail(link, 'expired', `expired ${cert.notAfter.toISOString()}`);
  }
}

/** The product line a CA common name names, if any (`ARK-Genoa`, `SEV-Milan`, `SEV-VLEK-Turin`). */
function generationNamedBy(cn: string | undefined): SnpGeneration | undefined {
  return SNP_GENERATIONS.find((g) => cn?.endsWith(`-${snpProductName(g)}`));
}

function checkChain(
  chain: SnpCertChain,
  opts: SnpChainOptions,
  seen: { generation?: SnpGeneration },
): SnpChainSuccess {
  const ark = fields('ark', chain.ark);
  const generation = (opts.trustedArks ?? AMD_TRUSTED_ARKS).get(
    createHash('sha256').update(ark.x509.raw).digest('hex'),
  );
  if (!generation) fail('ark', 'untrusted-root', `"${ark.subjectCommonName ?? '?'}" is not a pinned ARK`);
  seen.generation = generation;
  if (opts.expectedGeneration && opts.expectedGeneration !== generation) {
    fail('ark', 'wrong-generation', `${generation} ARK, expected ${opts.expectedGeneration}`);
  }
  if (ark.subjectCommonName !== SNP_CA_COMMON_NAME.ark(generation)) {
    fail('ark', 'unexpected-subject', `CN "${ark.subjectCommonName ?? ''}" for the ${generation} ARK`);
  }
  checkSignedBy('ark', ark, ark, opts);

  const ask = fields('ask', chain.ask);
  const askCn = ask.subjectCommonName;
  if (askCn !== SNP_CA_COMMON_NAME.ask(generation) && askCn !== SNP_CA_COMMON_NAME.asvk(generation)) {
    const named = generationNamedBy(askCn);
    if (named && named !== generation)
      fail('ask', 'wrong-generation', `"${askCn}" under the ${generation} ARK`);
    fail('ask', 'unexpected-subject', `CN "${askCn ?? ''}" is neither the ${generation} ASK nor ASVK`);
  }
  checkSignedBy('ask', ask, ark, opts);
  if (!ask.x509.ca) fail('ask', 'not-a-ca', `"${askCn}" is not a CA certificate`);

  const vek = fields('vek', chain.vek);
  const vekKind = vekKindOf(vek);
  if (!vekKind)
    fail('vek', 'unexpected-subject', `CN "${vek.subjectCommonName ?? ''}" is neither SEV-VCEK nor SEV-VLEK`);
  let info: SnpVekInfo;
  try {
    info = readVekInfo(vek);
  } catch (cause) {
    return fail('vek', 'malformed', 'AMD extensions cannot be read', cause);
  }
  if (info.generation !== generation) {
    fail('vek', 'wrong-generation', `${info.kind} for ${info.productName} in a ${generation} chain`);
  }
  checkSignedBy('vek', vek, ask, opts);
  const key = vek.x509.publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== P384_CURVE) {
    fail('vek', 'wrong-key-type', `${vekKind} key is not EC P-384`);
  }
  return { ok: true, generation, vekKind, vek: info, vekPublicKey: key };
}

/**
 * Verifies a VCEK/VLEK chain: the ARK is pinned (its fingerprint names the product line) and
 * self-signed; the ASK/ASVK and the VCEK/VLEK are each signed by their issuer with RSASSA-PSS SHA-384;
 * names, product lines and validity agree. Returns a verdict naming the first failed link; never throws
 * for bad input.
 */
export function verifySnpCertChain(chain: SnpCertChain, options: SnpChainOptions = {}): SnpChainVerdict {
  const seen: { generation?: SnpGeneration } = {};
  try {
    return checkChain(chain, options, seen);
  } catch (error) {
    if (!(error instanceof SnpChainError)) throw error;
    return {
      ok: false,
      link: error.link,
      reason: error.reason,
      error,
      ...(seen.generation ? { generation: seen.generation } : {}),
    };
  }
}

/** {@link verifySnpCertChain} that throws the {@link SnpChainError} instead of returning a failure. */
export function assertSnpCertChain(chain: SnpCertChain, options: SnpChainOptions = {}): SnpChainSuccess {
  const verdict = verifySnpCertChain(chain, options);
  if (!verdict.ok) throw verdict.error;
  return verdict;
}
