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
    /** Where the sealed context is kept while the VM exists (in its runtime dir). */
    contextFile: string;
  }): AgentSevLaunch;
  /**
   * After an agent restart (emulated SEV only): the context of a VM's launch back from the file
   * {@link launch} kept it in, or why it cannot be (the VM runs on; SEV migration is refused).
   */
  restore(input: { vmId: string; contextFile: string }): AgentSevRestore;
  close(): Promise<void>;
}

/** Why a VM's emulated SEV context could not be restored after an agent restart. */
export interface SevContextLoss {
  /** `context-missing`: no sealed context file; `context-refused`: the emulator refused the file. */
  readonly reason: 'context-missing' | 'context-refused';
  /** For `context-refused`: the emulator's fault (`integrity`, `foreign-platform`, `truncated`, …). */
  readonly fault?: string;
  /** For `context-refused`: the firmware status it answered with. */
  readonly status?: string;
  /** What went wrong, for an operator. */
  readonly detail: string;
}

/** The outcome of {@link SecureProcessor.restore}. */
export type AgentSevRestore = { readonly launch: AgentSevLaunch } | { readonly lost: SevContextLoss };

/**
 * One guest's SEV context on the software secure processor, driven by the agent. Every step that
 * changes the context's state also rewrites its sealed copy, so a restarted agent finds it as the
 * firmware would still hold it.
 */
export interface AgentSevLaunch {
  /** The context's guest state (LSECRET, RUNNING, SUPDATE, SENT, …). */
  readonly state: string;
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
  /** DEACTIVATE and DECOMMISSION; the sealed copy is removed. */
  close(): void;
}
