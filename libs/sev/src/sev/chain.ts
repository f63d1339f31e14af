import { SevError } from '../errors.js';
import { sevUsageName } from './algorithms.js';
import { encodeAmdCertificateBody, type AmdSigningKeyCertificate } from './amd-cert.js';
import { bytesEqual, toHex } from './bytes.js';
import { SevUsage, type SevUsageCode } from './constants.js';
import {
  SevBadSignatureError,
  SevInvalidCertificateError,
  SevMissingSignatureError,
  SevUntrustedRootError,
  SevWrongGenerationError,
} from './errors.js';
import { identifySevGeneration, sevGenerationOfKeyId, type SevGeneration } from './generation.js';
import { requireSevUsage, type SevCertificate } from './sev-cert.js';
import {
  sevSignerOf,
  sevSignerOfAmdKey,
  verifyAmdCertificateSignature,
  verifySevCertificateSignature,
} from './signing.js';

/** The platform half of a chain: what PDH_CERT_EXPORT returns (PDH, and PEK ‖ OCA ‖ CEK). */
export interface SevPlatformCertificates {
  readonly pdh: SevCertificate;
  readonly pek: SevCertificate;
  readonly oca: SevCertificate;
  readonly cek: SevCertificate;
}

/** AMD's half: the product line's ASK and ARK. */
export interface AmdCaCertificates {
  readonly ask: AmdSigningKeyCertificate;
  readonly ark: AmdSigningKeyCertificate;
}

/** A complete chain from a PDH up to AMD's root. */
export type SevCertificateChain = SevPlatformCertificates & AmdCaCertificates;

/** The signature relations checked, in the order they are reported. */
export const SEV_CHAIN_LINKS = [
  'ark-self',
  'ask-by-ark',
  'cek-by-ask',
  'oca-self',
  'pek-by-oca',
  'pek-by-cek',
  'pdh-by-pek',
] as const;
/** One signature relation of the chain. */
export type SevChainLink = (typeof SEV_CHAIN_LINKS)[number];

/** Why a link failed. */
export type SevChainFailureReason =
  'untrusted-root' | 'bad-signature' | 'missing-signature' | 'wrong-generation' | 'invalid-certificate';

/** Outcome of one link: passed, or failed with a reason and the typed error. */
export type SevChainLinkResult =
  | { readonly link: SevChainLink; readonly ok: true }
  | {
      readonly link: SevChainLink;
      readonly ok: false;
      readonly reason: SevChainFailureReason;
      readonly message: string;
      readonly error: SevError;
    };

/** Verdict on a whole chain: every link is checked and reported, not just the first failure. */
export interface SevChainVerdict {
  readonly ok: boolean;
  /** Product line of the ARK, when the ARK was recognised. */
  readonly generation?: SevGeneration;
  readonly links: readonly SevChainLinkResult[];
  /** First failed link, in SEV_CHAIN_LINKS order. */
  readonly failure?: Extract<SevChainLinkResult, { ok: false }>;
}

/** Options of `verifySevChain`. */
export interface VerifySevChainOptions {
  /** Fail the ARK link with WRONG_GENERATION unless the root belongs to this product line. */
  readonly expectedGeneration?: SevGeneration;
  /**
   * Extra roots trusted besides AMD's pinned ones (an emulator's own ARK), matched by their signed body.
   */
  readonly extraRoots?: readonly {
    readonly ark: AmdSigningKeyCertificate;
    readonly generation: SevGeneration;
  }[];
}

function reasonOf(err: SevError): SevChainFailureReason {
  if (err instanceof SevUntrustedRootError) return 'untrusted-root';
  if (err instanceof SevBadSignatureError) return 'bad-signature';
  if (err instanceof SevMissingSignatureError) return 'missing-signature';
  if (err instanceof SevWrongGenerationError) return 'wrong-generation';
  return 'invalid-certificate';
}

function check(link: SevChainLink, fn: () => void): SevChainLinkResult {
  try {
    fn();
    return { link, ok: true };
  } catch (err) {
    if (!(err instanceof SevError)) throw err;
    return { link, ok: false, reason: reasonOf(err), message: err.message, error: err };
  }
}

function rootGeneration(ark: AmdSigningKeyCertificate, options: VerifySevChainOptions): SevGeneration {
  const body = encodeAmdCertificateBody(ark);
  const extra = options.extraRoots?.find((r) => bytesEqual(encodeAmdCertificateBody(r.ark), body));
  return extra ? extra.generation : identifySevGeneration(ark);
}

function requireAmdUsage(cert: AmdSigningKeyCertificate, usage: SevUsageCode, role: string): void {
  if (cert.usage !== usage) {
    throw new SevInvalidCertificateError(role, `KEY_USAGE ${sevUsageName(cert.usage)}, expected ${role}`);
  }
}

function checkAskByArk(ask: AmdSigningKeyCertificate, ark: AmdSigningKeyCertificate): void {
  requireAmdUsage(ask, SevUsage.ASK, 'ASK');
  if (!bytesEqual(ask.certifyingId, ark.keyId)) {
    const other = sevGenerationOfKeyId(ask.certifyingId) ?? 'an unknown root';
    throw new SevWrongGenerationError(
      'ASK',
      `certified by ${other} (${toHex(ask.certifyingId)}), not this ARK`,
    );
  }
  if (ask.modulusBits !== ark.modulusBits) {
    throw new SevWrongGenerationError('ASK', `${ask.modulusBits}-bit ASK under a ${ark.modulusBits}-bit ARK`);
  }
  verifyAmdCertificateSignature(ask, ark);
}

/**
 * Verifies a SEV chain: ARK self-signature and pin (which also names the product line), ASK by ARK
 * (RSA-PSS with the generation's hash and salt), CEK by ASK, OCA self-signed, PEK by OCA and by CEK, PDH
 * by PEK. Every link is evaluated; the verdict says which failed and why.
 */
export function verifySevChain(
  chain: SevCertificateChain,
  options: VerifySevChainOptions = {},
): SevChainVerdict {
  const { pdh, pek, oca, cek, ask, ark } = chain;
  let generation: SevGeneration | undefined;
  const links: SevChainLinkResult[] = [
    check('ark-self', () => {
      requireAmdUsage(ark, SevUsage.ARK, 'ARK');
      generation = rootGeneration(ark, options);
      if (options.expectedGeneration && generation !== options.expectedGeneration) {
        throw new SevWrongGenerationError('ARK', `is ${generation}, expected ${options.expectedGeneration}`);
      }
      if (!bytesEqual(ark.certifyingId, ark.keyId)) {
        throw new SevInvalidCertificateError('ARK', 'CERTIFYING_ID differs from KEY_ID');
      }
      verifyAmdCertificateSignature(ark, ark);
    }),
    check('ask-by-ark', () => checkAskByArk(ask, ark)),
    check('cek-by-ask', () => {
      requireSevUsage(cek, SevUsage.CEK, 'CEK');
      verifySevCertificateSignature(cek, sevSignerOfAmdKey(ask));
    }),
    check('oca-self', () => {
      requireSevUsage(oca, SevUsage.OCA, 'OCA');
      verifySevCertificateSignature(oca, sevSignerOf(oca));
    }),
    check('pek-by-oca', () => {
      requireSevUsage(pek, SevUsage.PEK, 'PEK');
      verifySevCertificateSignature(pek, sevSignerOf(oca));
    }),
    check('pek-by-cek', () => {
      requireSevUsage(pek, SevUsage.PEK, 'PEK');
      verifySevCertificateSignature(pek, sevSignerOf(cek));
    }),
    check('pdh-by-pek', () => {
      requireSevUsage(pdh, SevUsage.PDH, 'PDH');
      verifySevCertificateSignature(pdh, sevSignerOf(pek));
    }),
  ];
  const failure = links.find((l): l is Extract<SevChainLinkResult, { ok: false }> => !l.ok);
  return { ok: failure === undefined, generation, links, failure };
}

/** Like `verifySevChain` but throws the first failed link's typed error; returns the product line. */
export function assertSevChain(
  chain: SevCertificateChain,
  options: VerifySevChainOptions = {},
): SevGeneration {
  const verdict = verifySevChain(chain, options);
  if (verdict.failure) throw verdict.failure.error;
  return verdict.generation as SevGeneration;
}
