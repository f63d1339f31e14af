import { createHash } from 'node:crypto';
import { OVERLAY_ADMISSION_TYPE, type Envelope, type OverlayAdmission } from '@ccm/contracts';
import { type Identity } from '@ccm/keys';
import { sealEnvelope } from '@ccm/messaging';

/**
 * An overlay admission statement (docs/network-overlay.md) signed by `signer` — the key-broker's
 * identity, unless a test plays an attacker — for guest `vmId` and its WireGuard key, its evidence
 * verified `verifiedAgoMs` ago, valid two minutes from then.
 */
export function overlayAdmission(
  signer: Identity,
  vmId: string,
  wgPublicKey: string,
  opts: { verifiedAgoMs?: number; endpoint?: string } = {},
): Envelope<OverlayAdmission> & { type: typeof OVERLAY_ADMISSION_TYPE } {
  const verifiedAt = Date.now() - (opts.verifiedAgoMs ?? 0);
  const env = sealEnvelope(signer, {
    // A statement travels inside step commands, on no subject of its own: it is bound to its type.
    natssubject: OVERLAY_ADMISSION_TYPE,
    type: OVERLAY_ADMISSION_TYPE,
    data: {
      vmId,
      wgPublicKey,
      evidenceDigest: createHash('sha256').update(`evidence of ${vmId}`).digest('hex'),
      verifiedAt: new Date(verifiedAt).toISOString(),
      expiresAt: new Date(verifiedAt + 120_000).toISOString(),
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    },
  });
  return { ...env, type: OVERLAY_ADMISSION_TYPE };
}
