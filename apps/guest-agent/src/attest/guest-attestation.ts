import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { CcmError, GuestErrorCodes, guestEvidenceMac, type EvidenceReply } from '@ccm/contracts';
import { SERVICE_CONFIG } from '@ccm/runtime';
import {
  launchSimSnpGuest,
  simGuestEvidence,
  SoftwareSecureProcessor,
  type SevGuest,
} from '@ccm/sev-emulator';
import { type GuestAgentConfig } from '../config.js';
import { overlayEndpoint } from '../overlay/overlay-config.js';
import { CheckpointService } from '../checkpoint/checkpoint.service.js';
import { readIdentitySecret } from './launch-secrets.js';

/**
 * The guest's attestation: SNP reports asked for from inside the guest (on hardware, /dev/sev-guest;
 * here the software secure processor's in-guest view of a simulated SNP guest), with REPORT_DATA
 * binding the guest's own identity key to the key-broker's nonce and the migration id. An SEV or
 * SEV-ES guest has no report: it MACs the same binding with the identity secret its attested launch
 * injected (the entry `LAUNCH_SECRET_GUIDS.identity` of its EFI secret table).
 */
@Injectable()
export class GuestAttestation implements OnModuleInit {
  private sp?: SoftwareSecureProcessor;
  private guest?: SevGuest;
  private identitySecret?: Buffer;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig,
    private readonly cp: CheckpointService,
  ) {}

  onModuleInit(): void {
    const mode = this.config.CCM_GUEST_SEV;
    if (mode === 'sev' || mode === 'sev-es') {
      this.identitySecret = readIdentitySecret(this.config.CCM_GUEST_SECRET_TABLE);
      return;
    }
    if (mode !== 'emulated') return;
    const dir = this.config.CCM_GUEST_SEV_DIR;
    if (!dir) throw new Error('CCM_GUEST_SEV=emulated needs CCM_GUEST_SEV_DIR (the secure processor state)');
    const sp = SoftwareSecureProcessor.open(dir);
    sp.snpInit();
    sp.init();
    this.guest = launchSimSnpGuest(sp, {
      image: this.config.CCM_GUEST_IMAGE,
      policy: BigInt(this.config.CCM_GUEST_SNP_POLICY),
    });
    this.sp = sp;
  }

  /** Evidence for the key-broker: a fresh report binding this guest's identity key, nonce and migration. */
  evidence(nonce: string, migrationId: string): EvidenceReply {
    const mode = this.config.CCM_GUEST_SEV;
    // Where the other peers reach this guest's WireGuard interface: reported, not attested.
    const endpoint = overlayEndpoint(this.config);
    const reported = endpoint ? { overlayEndpoint: endpoint } : {};
    if (this.identitySecret && (mode === 'sev' || mode === 'sev-es')) {
      const publicKey = this.cp.identity.publicKey;
      const mac = guestEvidenceMac(this.identitySecret, publicKey, Buffer.from(nonce, 'hex'), migrationId);
      return {
        vmId: this.config.CCM_VM_ID,
        nonce,
        migrationId,
        platform: mode,
        publicKey: publicKey.toString('base64'),
        mac: mac.toString('hex'),
        ...reported,
      };
    }
    if (!this.sp || !this.guest) {
      throw new CcmError(
        GuestErrorCodes.NoAttestation,
        `guest ${this.config.CCM_VM_ID} has no secure processor`,
        { retryable: false },
      );
    }
    return {
      ...simGuestEvidence(this.sp, this.guest, this.config.CCM_VM_ID, this.cp.identity.publicKey, {
        nonce,
        migrationId,
      }),
      ...reported,
    };
  }
}
