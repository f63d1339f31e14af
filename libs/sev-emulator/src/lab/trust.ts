import { createHash, type X509Certificate } from 'node:crypto';
import {
  encodeAmdCertificateBody,
  type AmdSigningKeyCertificate,
  type SevGeneration,
  type SnpGeneration,
  type SnpTrustedArks,
} from '@ccm/sev';

/** How a verifier trusts a lab explicitly: the inputs libs/sev's verifiers take for extra roots. */
export interface LabTrustAnchors {
  /** For `verifySevChain(chain, { extraRoots })` and the emulator's SEND_START. */
  readonly sevExtraRoots: readonly {
    readonly ark: AmdSigningKeyCertificate;
    readonly generation: SevGeneration;
  }[];
  /** For `verifySnpEvidence(report, chain, { trustedArks })` and `verifySnpCertChain`. */
  readonly snpTrustedArks: SnpTrustedArks;
}

/** SHA-256 of a certificate's DER, lowercase hex without separators (libs/sev's pin format). */
export function x509Sha256(cert: X509Certificate): string {
  return cert.fingerprint256.replace(/:/g, '').toLowerCase();
}

/** SHA-256 of a lab ARK's signed body, lowercase hex: how an owner policy's `arkBodySha256` names a lab. */
export function labPin(lab: { readonly ark: AmdSigningKeyCertificate }): string {
  return createHash('sha256').update(encodeAmdCertificateBody(lab.ark)).digest('hex');
}

/** The trust anchors naming one lab root (its ARK in both formats) for its product line. */
export function trustAnchorsOf(root: {
  readonly ark: AmdSigningKeyCertificate;
  readonly arkX509: X509Certificate;
  readonly generation: SnpGeneration;
}): LabTrustAnchors {
  return {
    sevExtraRoots: [{ ark: root.ark, generation: root.generation }],
    snpTrustedArks: new Map([[x509Sha256(root.arkX509), root.generation]]),
  };
}

/** Several labs' anchors as one (a test bed whose hosts were endorsed by different labs). */
export function mergeTrustAnchors(...anchors: readonly LabTrustAnchors[]): LabTrustAnchors {
  return {
    sevExtraRoots: anchors.flatMap((a) => a.sevExtraRoots),
    snpTrustedArks: new Map(anchors.flatMap((a) => [...a.snpTrustedArks])),
  };
}
