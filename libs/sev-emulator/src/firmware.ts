import { randomBytes } from 'node:crypto';
import type { SevRandomSource } from '@ccm/sev';
import { ensure, SevFirmwareError } from './errors.js';
import type { GuestContext, SevGuestKind } from './guest/context.js';
import { GuestMemory, PAGE_SIZE } from './guest/memory.js';
import { MemoryEncryptionKey } from './guest/memory-cipher.js';
import type { LabTrustAnchors } from './lab/trust.js';
import { type PlatformIdentity, saveIdentity } from './platform/identity.js';
import type { PlatformConfig, PlatformState } from './platform/platform-store.js';
import type { SevCommandName, SevGuestStateName, SevPlatformStateName } from './status.js';

/**
 * Node's CSPRNG drawn 4 KiB at a time: one `randomBytes` call per packet IV costs more than the IV is
 * worth at thousands of packets per second. Slices are never handed out twice.
 */
export function pooledRandom(poolSize = 4096): SevRandomSource {
  let pool = Buffer.alloc(0);
  let used = 0;
  return (size) => {
    if (size > poolSize) return randomBytes(size);
    if (used + size > pool.length) {
      pool = randomBytes(poolSize);
      used = 0;
    }
    used += size;
    return pool.subarray(used - size, used);
  };
}

/** Largest guest the emulator accepts (memory is sparse, so this bounds addresses, not RAM use). */
export const MAX_GUEST_MEMORY_BYTES = 2 ** 40;

/** A guest named by its firmware handle or by the {@link SevGuest} object a launch returned. */
export type GuestRef = number | { readonly handle: number };

/**
 * The firmware's volatile state (platform state, guest contexts, ASIDs) over its persistent state, and
 * the guards every command starts with. Internal: the public face is `SoftwareSecureProcessor`.
 */
export class Firmware {
  platformState: SevPlatformStateName = 'UNINIT';
  /** CONFIG bit 0: INIT ran with SEV-ES enabled. */
  esInitialized = false;
  snpInitialized = false;
  readonly guests = new Map<number, GuestContext>();
  /** ASID → handle of the guest activated with it. */
  readonly asidOwner = new Map<number, number>();
  /** ASIDs released by DEACTIVATE whose cache lines may still hold data: DF_FLUSH before reuse. */
  readonly asidsToFlush = new Set<number>();
  /** Set by DEACTIVATE, cleared by the host's WBINVD; DF_FLUSH refuses while set. */
  cachesDirty = false;
  #nextHandle = 1;

  constructor(
    readonly store: PlatformState,
    readonly trust: LabTrustAnchors,
    readonly random: SevRandomSource = pooledRandom(),
  ) {}

  get config(): PlatformConfig {
    return this.store.config;
  }

  get identity(): PlatformIdentity {
    return this.store.identity;
  }

  /** Replaces OCA/PEK/PDH and persists them before the command reports success. */
  replaceIdentity(identity: PlatformIdentity): void {
    saveIdentity(this.store.files, identity);
    this.store.identity = identity;
  }

  requirePlatform(command: SevCommandName, ...allowed: SevPlatformStateName[]): void {
    ensure(
      allowed.includes(this.platformState),
      'INVALID_PLATFORM_STATE',
      command,
      `platform is ${this.platformState}, needs ${allowed.join(' or ')}`,
    );
  }

  /** The context behind a handle (INVALID_GUEST for unknown or decommissioned handles). */
  guest(command: SevCommandName, ref: GuestRef): GuestContext {
    const handle = typeof ref === 'number' ? ref : ref.handle;
    const ctx = this.guests.get(handle);
    if (!ctx) throw new SevFirmwareError('INVALID_GUEST', command, `no guest with handle ${handle}`);
    return ctx;
  }

  requireGuestState(ctx: GuestContext, command: SevCommandName, ...allowed: SevGuestStateName[]): void {
    ensure(
      allowed.includes(ctx.state),
      'INVALID_GUEST_STATE',
      command,
      `guest ${ctx.handle} is ${ctx.state}, needs ${allowed.join(' or ')}`,
    );
  }

  requireKind(ctx: GuestContext, command: SevCommandName, ...kinds: SevGuestKind[]): void {
    ensure(kinds.includes(ctx.kind), 'INVALID_GUEST', command, `guest ${ctx.handle} is ${ctx.kind}`);
  }

  /** Commands that touch guest memory need the guest activated (its ASID bound to the VEK). */
  requireActive(ctx: GuestContext, command: SevCommandName): void {
    ensure(ctx.asid !== undefined, 'INACTIVE', command, `guest ${ctx.handle} is not activated`);
  }

  /** A guest range: inside the guest (INVALID_ADDRESS), `align`-aligned address and length. */
  requireRange(ctx: GuestContext, command: SevCommandName, gpa: number, length: number, align: number): void {
    ensure(
      ctx.memory.contains(gpa, length),
      'INVALID_ADDRESS',
      command,
      `[${gpa}, +${length}) is outside the guest`,
    );
    ensure(gpa % align === 0, 'INVALID_ADDRESS', command, `address ${gpa} is not ${align}-byte aligned`);
    ensure(
      length > 0 && length % align === 0,
      'INVALID_LENGTH',
      command,
      `length ${length} is not a multiple of ${align}`,
    );
  }

  /** Creates a guest context (LAUNCH_START, RECEIVE_START, SNP_LAUNCH_START); the platform is WORKING. */
  addGuest(
    command: SevCommandName,
    init: Omit<GuestContext, 'handle' | 'asid' | 'vek' | 'memory' | 'vmsas' | 'secretIvs'> & {
      readonly memoryBytes: number;
      readonly vek?: MemoryEncryptionKey;
    },
  ): GuestContext {
    const { memoryBytes, vek: shared, ...rest } = init;
    ensure(
      Number.isSafeInteger(memoryBytes) &&
        memoryBytes > 0 &&
        memoryBytes % PAGE_SIZE === 0 &&
        memoryBytes <= MAX_GUEST_MEMORY_BYTES,
      'INVALID_PARAM',
      command,
      `guest memory must be a positive multiple of ${PAGE_SIZE} bytes up to 1 TiB, got ${memoryBytes}`,
    );
    ensure(this.guests.size < this.config.maxAsid, 'RESOURCE_LIMIT', command, 'no guest context left');
    const vek = shared ?? MemoryEncryptionKey.generate();
    const ctx: GuestContext = {
      ...rest,
      handle: this.#nextHandle++,
      asid: undefined,
      vek,
      memory: new GuestMemory(memoryBytes, vek),
      vmsas: [],
      secretIvs: new Set(),
    };
    this.guests.set(ctx.handle, ctx);
    this.platformState = 'WORKING';
    return ctx;
  }

  /**
   * Takes back a context that was kept sealed outside the firmware (`importGuest`), under its own handle
   * and ASID; the caller checked both are free. Later handles never reuse it.
   */
  insertGuest(ctx: GuestContext): void {
    this.guests.set(ctx.handle, ctx);
    if (ctx.asid !== undefined) this.asidOwner.set(ctx.asid, ctx.handle);
    this.#nextHandle = Math.max(this.#nextHandle, ctx.handle + 1);
    this.platformState = 'WORKING';
  }

  /** Drops a context (DECOMMISSION, SHUTDOWN); the platform returns to INIT with the last one. */
  removeGuest(handle: number): void {
    const ctx = this.guests.get(handle);
    if (ctx?.asid !== undefined) this.asidOwner.delete(ctx.asid);
    this.guests.delete(handle);
    if (this.guests.size === 0 && this.platformState === 'WORKING') this.platformState = 'INIT';
  }
}
