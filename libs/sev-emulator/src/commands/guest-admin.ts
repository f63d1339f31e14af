import { decodeGuestPolicy, SevPolicyBit } from '@ccm/sev';
import { ensure, SevFirmwareError } from '../errors.js';
import type { Firmware, GuestRef } from '../firmware.js';
import type { GuestContext } from '../guest/context.js';
import type { SevCommandName, SevGuestStateName } from '../status.js';

/** GUEST_STATUS output. */
export interface SevGuestStatus {
  readonly handle: number;
  readonly kind: GuestContext['kind'];
  /** The 32-bit SEV policy (for SNP guests: the 64-bit policy is in `snpPolicy`). */
  readonly policy: number;
  readonly snpPolicy?: bigint;
  /** 0 when not activated. */
  readonly asid: number;
  readonly state: SevGuestStateName;
}

/**
 * ACTIVATE: binds the guest's VEK to an ASID. With no `asid` the lowest free, flushed one is picked (a
 * convenience for drivers; KVM picks it itself). ACTIVE if already activated, INVALID_ASID outside
 * 1..maxAsid, ASID_OWNED if another guest holds it, DF_FLUSH_REQUIRED if it was deactivated since the
 * last DF_FLUSH, RESOURCE_LIMIT if none is free.
 */
export function activate(fw: Firmware, ref: GuestRef, asid?: number): number {
  const command = 'ACTIVATE';
  fw.requirePlatform(command, 'INIT', 'WORKING');
  const ctx = fw.guest(command, ref);
  ensure(ctx.asid === undefined, 'ACTIVE', command, `guest ${ctx.handle} already has ASID ${ctx.asid}`);
  let chosen = asid;
  if (chosen === undefined) {
    for (let a = 1; a <= fw.config.maxAsid && chosen === undefined; a++) {
      if (!fw.asidOwner.has(a) && !fw.asidsToFlush.has(a)) chosen = a;
    }
    ensure(chosen !== undefined, 'RESOURCE_LIMIT', command, 'no free ASID (DF_FLUSH may release some)');
  }
  ensure(
    Number.isInteger(chosen) && chosen >= 1 && chosen <= fw.config.maxAsid,
    'INVALID_ASID',
    command,
    `ASID ${chosen} outside 1..${fw.config.maxAsid}`,
  );
  const owner = fw.asidOwner.get(chosen);
  ensure(owner === undefined, 'ASID_OWNED', command, `ASID ${chosen} belongs to guest ${owner}`);
  ensure(!fw.asidsToFlush.has(chosen), 'DF_FLUSH_REQUIRED', command, `ASID ${chosen} needs DF_FLUSH first`);
  fw.asidOwner.set(chosen, ctx.handle);
  ctx.asid = chosen;
  return chosen;
}

/** DEACTIVATE: releases the ASID (reusable after WBINVD + DF_FLUSH); INACTIVE if not activated. */
export function deactivate(fw: Firmware, ref: GuestRef): void {
  const ctx = fw.guest('DEACTIVATE', ref);
  fw.requireActive(ctx, 'DEACTIVATE');
  const asid = ctx.asid as number;
  fw.asidOwner.delete(asid);
  fw.asidsToFlush.add(asid);
  fw.cachesDirty = true;
  ctx.asid = undefined;
}

/** DECOMMISSION: deletes the context and its memory; ACTIVE while the guest still holds an ASID. */
export function decommission(fw: Firmware, ref: GuestRef): void {
  const ctx = fw.guest('DECOMMISSION', ref);
  ensure(ctx.asid === undefined, 'ACTIVE', 'DECOMMISSION', `guest ${ctx.handle} is active: DEACTIVATE first`);
  fw.removeGuest(ctx.handle);
}

/** GUEST_STATUS. */
export function guestStatus(fw: Firmware, ref: GuestRef): SevGuestStatus {
  const ctx = fw.guest('GUEST_STATUS', ref);
  return {
    handle: ctx.handle,
    kind: ctx.kind,
    policy: ctx.policy,
    ...(ctx.snp ? { snpPolicy: ctx.snp.policyValue } : {}),
    asid: ctx.asid ?? 0,
    state: ctx.state,
  };
}

function requireDebuggable(fw: Firmware, command: SevCommandName, ref: GuestRef): GuestContext {
  const ctx = fw.guest(command, ref);
  const allowed = ctx.snp
    ? decodeGuestPolicy(ctx.snp.policyValue).debugAllowed
    : (ctx.policy & SevPolicyBit.NODBG) === 0;
  if (!allowed)
    throw new SevFirmwareError('POLICY_FAILURE', command, `guest ${ctx.handle} policy forbids debugging`);
  fw.requireActive(ctx, command);
  return ctx;
}

/** DBG_DECRYPT: guest plaintext for a debugger; POLICY_FAILURE when the policy has NODBG (SNP: no DEBUG). */
export function dbgDecrypt(fw: Firmware, ref: GuestRef, gpa: number, length: number): Buffer {
  const ctx = requireDebuggable(fw, 'DBG_DECRYPT', ref);
  fw.requireRange(ctx, 'DBG_DECRYPT', gpa, length, 16);
  return ctx.memory.readPrivate(gpa, length);
}

/** DBG_ENCRYPT: writes plaintext into private guest memory; same policy rule as DBG_DECRYPT. */
export function dbgEncrypt(fw: Firmware, ref: GuestRef, gpa: number, bytes: Uint8Array): void {
  const ctx = requireDebuggable(fw, 'DBG_ENCRYPT', ref);
  fw.requireRange(ctx, 'DBG_ENCRYPT', gpa, bytes.length, 16);
  ctx.memory.writePrivate(gpa, bytes);
}
