import { type SimMemory } from './memory.js';

/**
 * The SEV side of a simulated VM: its memory is the software secure processor's guest memory
 * (encrypted per guest), the launch runs LAUNCH_* on it, and migration seals every page with
 * SEND_UPDATE_DATA and opens it with RECEIVE_UPDATE_DATA.
 */
export interface SimSev {
  readonly memory: SimMemory;
  /** query-sev. */
  info(): Record<string, unknown>;
  /** LAUNCH_MEASURE blob, base64 (query-sev-launch-measure). */
  measurement(): string;
  /** LAUNCH_SECRET (sev-inject-launch-secret); the firmware secret area when `gpa` is omitted. */
  injectSecret(headerBase64: string, secretBase64: string, gpa?: number): void;
  /** False once SEND_FINISH made the context SENT: the firmware then only decommissions it. */
  canRun(): boolean;
  /** LAUNCH_FINISH, at the first `cont`. */
  finishLaunch(): void;
  /** SEND_START with the target chain; returns what HELLO carries to the destination. */
  sendStart(target: { pdh: string; platCert: string; amdCert: string }): Record<string, unknown>;
  /** SEND_FINISH (completed) or SEND_CANCEL (failed, cancelled): the guest runs on here after a cancel. */
  sendEnd(completed: boolean): void;
  /** RECEIVE_START from what HELLO carried. */
  receiveStart(hello: Record<string, unknown>): void;
  /** RECEIVE_FINISH, once the last page is in. */
  receiveFinish(): void;
  /** Guest memory as the host sees it (ciphertext). */
  hostView(gpa: number, length: number): Buffer;
}
