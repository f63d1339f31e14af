import { type SevChainBase64 } from '@ccm/contracts';
import { type SevPlatformVersion } from '@ccm/sev';

/**
 * The host's secure processor as the agent uses it: the platform's identity (firmware version,
 * certificate chain) and, where no SEV firmware runs the guest (QEMU on a host without SEV), the launch
 * the agent drives itself on the software secure processor.
 */
export interface SecureProcessor {
  readonly mode: 'hardware' | 'emulated';
  readonly version: SevPlatformVersion;
  readonly features: { sevEs: boolean; sevSnp: boolean; cbitpos: number; reducedPhysBits: number };
  /** PDH_CERT_EXPORT plus the AMD (or lab) CA chain, in QEMU's base64 form. */
  chain(): SevChainBase64;
  /**
   * LAUNCH_START, then LAUNCH_UPDATE_DATA of each region in order (emulated SEV only): the agent
   * measures what it handed QEMU.
   */
  launch(input: {
    vmId: string;
    policy: number;
    godh: Buffer;
    session: Buffer;
    regions: readonly Uint8Array[];
  }): AgentSevLaunch;
  close(): Promise<void>;
}

/** One guest's SEV context on the software secure processor, driven by the agent. */
export interface AgentSevLaunch {
  /** LAUNCH_MEASURE: MEASURE ‖ MNONCE (48 bytes). */
  measure(): Buffer;
  /** LAUNCH_SECRET: check the packet's MAC against this launch and place the secret. */
  injectSecret(header: Buffer, ciphertext: Buffer, gpa?: number): void;
  /** LAUNCH_FINISH (once). */
  finish(): void;
  /** SEND_START to the target chain: verifies it to a trusted root and enforces the guest policy. */
  sendStart(target: SevChainBase64): void;
  /** SEND_FINISH after a completed migration, SEND_CANCEL otherwise. */
  sendEnd(completed: boolean): void;
  /** The guest's secret area as the emulator models it (what the guest reads there). */
  secretArea(length: number): Buffer;
  /** DEACTIVATE and DECOMMISSION. */
  close(): void;
}
