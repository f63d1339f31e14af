import type { KeyObject } from 'node:crypto';
import {
  decodeAmdCaChain,
  decodeSevBase64,
  decodeSevPlatformCertChain,
  encodeAmdCaChain,
  encodeSevPlatformCertChain,
} from './bundles.js';
import { assertSevChain, type SevCertificateChain, type VerifySevChainOptions } from './chain.js';
import { SevUsage } from './constants.js';
import { SevPolicyError } from './errors.js';
import { createSevTransportSession } from './key-agreement.js';
import { decodeSevGuestPolicy } from './policy.js';
import { sevPublicKeysEqual } from './public-key.js';
import {
  decodeSevCertificate,
  encodeSevCertificate,
  requireSevUsage,
  type SevCertificate,
} from './sev-cert.js';
import { encodeSevSession, type SevSessionBlob, type SevTransportKeys } from './session.js';
import type { SevRandomSource } from './transport-crypto.js';

/** QEMU `migrate-set-parameters` SEV fields (AMD's migration branch): base64 of the target's certs. */
export interface QemuSevMigrationParameters {
  /** Target PDH (2084 bytes). */
  readonly 'sev-pdh': string;
  /** Target PEK ‖ OCA ‖ CEK. */
  readonly 'sev-plat-cert': string;
  /** ASK ‖ ARK of the target's product line (the QAPI doc's "ASK and OCA" is a typo). */
  readonly 'sev-amd-cert': string;
}

/** Encodes a target chain as QEMU's `migrate-set-parameters` SEV fields. */
export function encodeQemuSevMigrationParameters(target: SevCertificateChain): QemuSevMigrationParameters {
  return {
    'sev-pdh': encodeSevCertificate(target.pdh).toString('base64'),
    'sev-plat-cert': encodeSevPlatformCertChain(target).toString('base64'),
    'sev-amd-cert': encodeAmdCaChain(target).toString('base64'),
  };
}

/** Decodes the three fields back (what SEND_START receives as PDH_CERT, PLAT_CERT and AMD_CERT). */
export function decodeQemuSevMigrationParameters(params: QemuSevMigrationParameters): SevCertificateChain {
  const pdh = decodeSevCertificate(decodeSevBase64(params['sev-pdh'], 'sev-pdh'));
  requireSevUsage(pdh, SevUsage.PDH, 'sev-pdh');
  return {
    pdh,
    ...decodeSevPlatformCertChain(decodeSevBase64(params['sev-plat-cert'], 'sev-plat-cert')),
    ...decodeAmdCaChain(decodeSevBase64(params['sev-amd-cert'], 'sev-amd-cert')),
  };
}

/** Facts about the migration the policy is checked against. */
export interface SevMigrationContext {
  /** The target's chain; SEV policy requires it to verify to an AMD root (checked by the caller or here). */
  readonly target: SevCertificateChain;
  /** The source platform's OCA certificate, needed when the policy has DOMAIN. */
  readonly sourceOca?: SevCertificate;
}

/**
 * Policy violations of sending a guest to `target` (empty = allowed): NOSEND forbids it, DOMAIN requires
 * the same OCA key as the source, API_MAJOR/MINOR must not exceed the target's firmware version (read
 * from its PEK API fields). The SEV bit's "AMD-certified target" is enforced by `startSevSend`, which
 * always verifies the chain.
 */
export function sevMigrationPolicyViolations(policy: number, context: SevMigrationContext): string[] {
  const p = decodeSevGuestPolicy(policy);
  const violations: string[] = [];
  if (p.noSend) violations.push('NOSEND: the guest may not be migrated');
  if (p.domain) {
    const same =
      context.sourceOca && sevPublicKeysEqual(context.sourceOca.publicKey, context.target.oca.publicKey);
    if (!same) violations.push('DOMAIN: the target platform is not owned by the source OCA');
  }
  const { apiMajor, apiMinor } = context.target.pek;
  if (apiMajor < p.apiMajor || (apiMajor === p.apiMajor && apiMinor < p.apiMinor)) {
    violations.push(
      `API: target firmware ${apiMajor}.${apiMinor} is below the policy minimum ${p.apiMajor}.${p.apiMinor}`,
    );
  }
  return violations;
}

/** Inputs of `startSevSend`. */
export interface StartSevSendInput {
  /** The source platform's PDH private key (firmware-held; an emulator has it). */
  readonly sourcePdhPrivateKey: KeyObject;
  readonly policy: number;
  readonly context: SevMigrationContext;
  readonly chainOptions?: VerifySevChainOptions;
  readonly random?: SevRandomSource;
}

/** SEND_START's result: the session blob for the target and the fresh transport keys. */
export interface SevSendStart {
  readonly session: SevSessionBlob;
  readonly sessionBytes: Buffer;
  readonly keys: SevTransportKeys;
}

/**
 * SEND_START as the source firmware does it: verify the target chain to AMD's root (typed chain error),
 * enforce the policy (SevPolicyError), pick fresh TEK/TIK and wrap them for the target PDH with Z from
 * the source PDH key. The target opens it with `openSevTransportSession` (RECEIVE_START).
 */
export function startSevSend(input: StartSevSendInput): SevSendStart {
  assertSevChain(input.context.target, input.chainOptions);
  const violations = sevMigrationPolicyViolations(input.policy, input.context);
  if (violations.length > 0) throw new SevPolicyError(violations);
  const { session, keys } = createSevTransportSession({
    privateKey: input.sourcePdhPrivateKey,
    peer: input.context.target.pdh,
    policy: input.policy,
    random: input.random,
  });
  return { session, sessionBytes: encodeSevSession(session), keys };
}
