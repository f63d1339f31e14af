import { SevFirmwareError } from '../errors.js';
import type { Firmware } from '../firmware.js';
import {
  SNP_REPORT_REQUEST_SIZE,
  SNP_REPORT_RESPONSE_HEADER_SIZE,
  snpGuestRequestReport,
} from '../commands/snp.js';
import type { SevGuestStateName } from '../status.js';
import type { GuestContext, SevGuestKind } from './context.js';

/** Guest memory as the hypervisor sees it: shared bytes as written, private bytes as VEK ciphertext. */
export interface HostMemoryView {
  readonly size: number;
  /** Physical bytes: what a host read of guest RAM returns. */
  read(gpa: number, length: number): Buffer;
  /** Physical write (loading an image before LAUNCH_UPDATE_DATA, filling shared buffers). */
  write(gpa: number, bytes: Uint8Array): void;
}

/** Guest memory as the guest itself sees it. */
export interface InGuestMemory {
  readonly size: number;
  /** Read with the C-bit set: private plaintext (shared bytes read this way are garbage, as on hardware). */
  read(gpa: number, length: number): Buffer;
  /** Write with the C-bit set: the bytes become private. */
  write(gpa: number, bytes: Uint8Array): void;
  /** Read with the C-bit clear (a buffer shared with the host). */
  readShared(gpa: number, length: number): Buffer;
  /** Write with the C-bit clear: the host can read these bytes. */
  writeShared(gpa: number, bytes: Uint8Array): void;
  /** True when every byte of the range is private (encrypted). */
  isPrivate(gpa: number, length: number): boolean;
}

/** What code running inside the guest can do. */
export interface InGuestAccess {
  readonly memory: InGuestMemory;
  /** SNP: an attestation report (1184 bytes) with this REPORT_DATA (≤ 64 bytes, zero-padded) and VMPL. */
  attestationReport(reportData: Uint8Array, options?: { readonly vmpl?: number }): Buffer;
  /** SNP: a raw MSG_REPORT_REQ (96 bytes) answered with MSG_REPORT_RSP (32-byte header ‖ report). */
  snpGuestRequest(request: Uint8Array): Buffer;
}

/** Guest states in which the guest's vCPUs run (so in-guest code can execute). */
const RUNNING_STATES: readonly SevGuestStateName[] = ['RUNNING', 'SUPDATE'];

/**
 * A driver's handle on one guest context: its firmware handle, kind, state and policy, and its memory
 * through the host view. Guest plaintext is reachable only through {@link inGuest}, which models code
 * running inside the guest — a hypervisor driver must hand it to the guest side (the simulated
 * guest-agent) and never use it for host work.
 */
export class SevGuest {
  readonly host: HostMemoryView;

  constructor(
    private readonly fw: Firmware,
    private readonly ctx: GuestContext,
  ) {
    this.host = {
      size: ctx.memory.size,
      read: (gpa, length) => this.#memory('host read', gpa, length).readPhysical(gpa, length),
      write: (gpa, bytes) => this.#memory('host write', gpa, bytes.length).writePhysical(gpa, bytes),
    };
  }

  get handle(): number {
    return this.ctx.handle;
  }

  get kind(): SevGuestKind {
    return this.ctx.kind;
  }

  get state(): SevGuestStateName {
    return this.fw.guests.get(this.ctx.handle) === this.ctx ? this.ctx.state : 'UNINIT';
  }

  /** The 32-bit SEV policy (SNP guests: see `snpPolicy`). */
  get policy(): number {
    return this.ctx.policy;
  }

  get snpPolicy(): bigint | undefined {
    return this.ctx.snp?.policyValue;
  }

  /** Number of vCPU states (VMSAs) the firmware holds for the guest. */
  get vcpuCount(): number {
    return this.ctx.vmsas.length;
  }

  #memory(what: string, gpa: number, length: number) {
    if (this.fw.guests.get(this.ctx.handle) !== this.ctx) {
      throw new SevFirmwareError('INVALID_GUEST', undefined, `guest ${this.ctx.handle} was decommissioned`);
    }
    if (!this.ctx.memory.contains(gpa, length)) {
      throw new SevFirmwareError(
        'INVALID_ADDRESS',
        undefined,
        `${what} [${gpa}, +${length}) is outside the guest`,
      );
    }
    return this.ctx.memory;
  }

  #running(what: string, gpa: number, length: number) {
    const memory = this.#memory(what, gpa, length);
    if (!RUNNING_STATES.includes(this.ctx.state)) {
      throw new SevFirmwareError(
        'INVALID_GUEST_STATE',
        undefined,
        `guest ${this.ctx.handle} is not running (${this.ctx.state})`,
      );
    }
    return memory;
  }

  /** The in-guest view: for code that models the guest's own software, never for the hypervisor. */
  inGuest(): InGuestAccess {
    const memory: InGuestMemory = {
      size: this.ctx.memory.size,
      read: (gpa, length) => this.#running('guest read', gpa, length).readPrivate(gpa, length),
      write: (gpa, bytes) => this.#running('guest write', gpa, bytes.length).writePrivate(gpa, bytes),
      readShared: (gpa, length) => this.#running('guest read', gpa, length).readPhysical(gpa, length),
      writeShared: (gpa, bytes) => this.#running('guest write', gpa, bytes.length).writePhysical(gpa, bytes),
      isPrivate: (gpa, length) => this.#memory('guest query', gpa, length).isPrivate(gpa, length),
    };
    const snpGuestRequest = (request: Uint8Array): Buffer =>
      snpGuestRequestReport(this.fw, this.ctx.handle, request);
    return {
      memory,
      snpGuestRequest,
      attestationReport: (reportData, options = {}) => {
        if (reportData.length > 64) {
          throw new SevFirmwareError('INVALID_PARAM', 'SNP_GUEST_REQUEST', 'REPORT_DATA is at most 64 bytes');
        }
        const request = Buffer.alloc(SNP_REPORT_REQUEST_SIZE);
        request.set(reportData, 0);
        request.writeUInt32LE(options.vmpl ?? 0, 64);
        return snpGuestRequest(request).subarray(SNP_REPORT_RESPONSE_HEADER_SIZE);
      },
    };
  }
}
