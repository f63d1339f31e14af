import {
  assertSevChain,
  decodeAmdCaChain,
  decodeSevBase64,
  decodeSevGuestPolicy,
  decodeSevPlatformCertChain,
  type QemuSevMigrationParameters,
  requireSevUsage,
  SEV_PLATFORM_CERT_CHAIN_SIZE,
  type SevCertificate,
  sevPublicKeysEqual,
  sevSignerOf,
  SevUsage,
  verifySevCertificateSignature,
} from '@ccm/sev';
import { asFirmware, ensure, SevFirmwareError, SevFirmwareLengthError } from '../errors.js';
import type { Firmware } from '../firmware.js';
import type { GuestContext } from '../guest/context.js';
import { certificateInput } from './launch.js';
import { apiAtLeast } from './policy-checks.js';

/** SEND_START's certificate buffers: the target's PDH, PLAT_CERT and AMD_CERT, as QEMU passes them. */
export interface SendStartTarget {
  /** The target PDH (2084 bytes). */
  readonly pdh: Uint8Array;
  /** The target's PEK ‖ OCA ‖ CEK (6252 bytes, its PDH_CERT_EXPORT chain). */
  readonly platformCerts: Uint8Array;
  /** ASK ‖ ARK of the target's product line; required when the policy has the SEV bit. */
  readonly amdCerts?: Uint8Array;
}

/** The buffers of QEMU's `migrate-set-parameters` SEV fields (`sev-pdh`, `sev-plat-cert`, `sev-amd-cert`). */
export function sendTargetFromQemu(params: QemuSevMigrationParameters): SendStartTarget {
  return {
    pdh: decodeSevBase64(params['sev-pdh'], 'sev-pdh'),
    platformCerts: decodeSevBase64(params['sev-plat-cert'], 'sev-plat-cert'),
    amdCerts: decodeSevBase64(params['sev-amd-cert'], 'sev-amd-cert'),
  };
}

/**
 * What SEND_START checks before it wraps keys for a target (SEV API SEND_START, spec §8):
 * - NOSEND refuses outright (POLICY_FAILURE, reason `nosend`);
 * - the platform chain must hold: OCA self-signed, PEK signed by OCA and CEK, PDH by PEK
 *   (BAD_SIGNATURE / INVALID_CERTIFICATE);
 * - with the SEV bit the target must be vendor-certified: ASK ‖ ARK present and CEK ← ASK ← ARK up to a
 *   trusted root (AMD's, or a lab root this platform was told to trust) — INVALID_CERTIFICATE when the
 *   root is unknown or ASK ‖ ARK is missing. Without the SEV bit AMD_CERT is not consulted (spec §8.1);
 *   the key broker validates the whole chain before it releases anything;
 * - DOMAIN: the target's OCA must be this platform's OCA (POLICY_FAILURE, reason `domain`);
 * - API_MAJOR/MINOR: the target firmware (its PEK's API fields) must meet it (reason `api-version`).
 * Returns the verified target PDH.
 */
export function checkSendTarget(fw: Firmware, ctx: GuestContext, target: SendStartTarget): SevCertificate {
  const command = 'SEND_START';
  const policy = decodeSevGuestPolicy(ctx.policy);
  ensure(!policy.noSend, 'POLICY_FAILURE', command, 'NOSEND: the guest may not be migrated', 'nosend');
  const pdh = certificateInput(command, 'target PDH', target.pdh);
  if (target.platformCerts.length !== SEV_PLATFORM_CERT_CHAIN_SIZE) {
    throw new SevFirmwareLengthError(
      command,
      'PLAT_CERT',
      SEV_PLATFORM_CERT_CHAIN_SIZE,
      target.platformCerts.length,
    );
  }
  const platform = asFirmware(command, () => decodeSevPlatformCertChain(target.platformCerts));
  asFirmware(command, () => {
    requireSevUsage(pdh, SevUsage.PDH, 'target PDH');
    verifySevCertificateSignature(platform.oca, sevSignerOf(platform.oca));
    verifySevCertificateSignature(platform.pek, sevSignerOf(platform.oca));
    verifySevCertificateSignature(platform.pek, sevSignerOf(platform.cek));
    verifySevCertificateSignature(pdh, sevSignerOf(platform.pek));
  });
  if (policy.sev) {
    const amdCerts = target.amdCerts;
    if (amdCerts === undefined || amdCerts.length === 0) {
      throw new SevFirmwareError('INVALID_CERTIFICATE', command, 'the SEV policy bit needs ASK ‖ ARK', {
        reason: 'amd-certs-missing',
      });
    }
    const amd = asFirmware(command, () => decodeAmdCaChain(amdCerts));
    asFirmware(command, () =>
      assertSevChain({ pdh, ...platform, ...amd }, { extraRoots: fw.trust.sevExtraRoots }),
    );
  }
  if (policy.domain) {
    const same = sevPublicKeysEqual(platform.oca.publicKey, fw.identity.oca.cert.publicKey);
    ensure(same, 'POLICY_FAILURE', command, 'DOMAIN: the target is owned by another OCA', 'domain');
  }
  ensure(
    apiAtLeast(platform.pek.apiMajor, platform.pek.apiMinor, policy),
    'POLICY_FAILURE',
    command,
    `target firmware ${platform.pek.apiMajor}.${platform.pek.apiMinor} is below the policy minimum`,
    'api-version',
  );
  return pdh;
}
