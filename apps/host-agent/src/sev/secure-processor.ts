import { type SevChainBase64 } from '@ccm/contracts';
import { type SevPlatformVersion } from '@ccm/sev';

/**
 * The host's secure processor as the agent uses it: the platform's identity (firmware version,
 * certificate chain) and, where no SEV firmware runs the guest (QEMU on a host without SEV), the launch
 * and SEND_START steps the agent drives itself on the software secure processor.
 */
export interface SecureProcessor {
  readonly mode: 'hardware' | 'emulated';
  readonly version: SevPlatformVersion;
  readonly features: { sevEs: boolean; sevSnp: boolean; cbitpos: number; reducedPhysBits: number };
  /** PDH_CERT_EXPORT plus the AMD (or lab) CA chain, in QEMU's base64 form. */
  chain(): SevChainBase64;
  /** LAUNCH_START for a guest whose launch the agent measures (emulated SEV only). */
  launch(input: { vmId: string; policy: number; godh: Buffer; session: Buffer }): AgentSevLaunch;
  /**
   * SEND_START's checks for an outgoing migration the agent cannot hand to firmware: the target chain
   * verifies to a trusted root and the guest policy allows the move. Throws a SevError otherwise.
   */
  checkSend(input: { policy: number; target: SevChainBase64 }): void;
  close(): Promise<void>;
}

/** One guest's launch on the software secure processor, driven by the agent. */
export interface AgentSevLaunch {
  /** LAUNCH_UPDATE_DATA: measure bytes the guest was loaded with. */
  update(bytes: Uint8Array): void;
  /** LAUNCH_MEASURE: MEASURE ‖ MNONCE (48 bytes). */
  measure(): Buffer;
  /** LAUNCH_SECRET: check the packet's MAC against this launch and place the secret. */
  injectSecret(header: Buffer, ciphertext: Buffer, gpa?: number): void;
  /** LAUNCH_FINISH. */
  finish(): void;
  /** Releases the guest context (DECOMMISSION). */
  close(): void;
}
