import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { CcmError, guestEvidenceReportData, GuestErrorCodes, type EvidenceReply } from '@ccm/contracts';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { kdsVcekUrl, parseAttestationReport } from '@ccm/sev';
import { launchSimSnpGuest, SoftwareSecureProcessor, type SevGuest } from '@ccm/sev-emulator';
import { type GuestAgentConfig } from '../config.js';
import { CheckpointService } from '../checkpoint/checkpoint.service.js';

/**
 * The guest's attestation: SNP reports asked for from inside the guest (on hardware, /dev/sev-guest;
 * here the software secure processor's in-guest view of a simulated SNP guest), with REPORT_DATA
 * binding the guest's own identity key to the key-broker's nonce and the migration id.
 */
@Injectable()
export class GuestAttestation implements OnModuleInit {
  private sp?: SoftwareSecureProcessor;
  private guest?: SevGuest;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig,
    private readonly cp: CheckpointService,
  ) {}

  onModuleInit(): void {
    if (this.config.CCM_GUEST_SEV !== 'emulated') return;
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
  evidence(nonceHex: string, migrationId: string): EvidenceReply {
    if (!this.sp || !this.guest) {
      throw new CcmError(
        GuestErrorCodes.NoAttestation,
        `guest ${this.config.CCM_VM_ID} has no secure processor`,
        {
          retryable: false,
        },
      );
    }
    const publicKey = this.cp.identity.publicKey;
    const reportData = guestEvidenceReportData(publicKey, Buffer.from(nonceHex, 'hex'), migrationId);
    const report = this.guest.inGuest().attestationReport(reportData);
    const chain = this.sp.snpCertChain();
    const parsed = parseAttestationReport(report, { generation: this.sp.config.generation });
    return {
      vmId: this.config.CCM_VM_ID,
      nonce: nonceHex,
      migrationId,
      platform: 'sev-snp',
      report: report.toString('base64'),
      publicKey: publicKey.toString('base64'),
      vcekChain: {
        ark: chain.ark.raw.toString('base64'),
        ask: chain.ask.raw.toString('base64'),
        vcek: chain.vek.raw.toString('base64'),
      },
      vcekUrl: kdsVcekUrl(this.sp.config.generation, parsed.chipId, parsed.reportedTcb),
    };
  }
}
