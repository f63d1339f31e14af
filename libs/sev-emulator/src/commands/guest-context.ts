import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { SevGuestContextError, type SevGuestContextFault } from '../errors.js';
import type { Firmware, GuestRef } from '../firmware.js';
import { decodeContextBody, encodeContextBody } from '../guest/context-body.js';
import type { GuestContext } from '../guest/context.js';
import { GuestMemory } from '../guest/memory.js';
import type { SevStatusName } from '../status.js';

/**
 * Guest contexts kept outside the firmware. A real AMD-SP holds every guest's context for as long as
 * the guest exists, whatever happens to the hypervisor process that launched it; the software secure
 * processor lives in that process, so it hands a context out sealed under a key only this chip derives
 * and takes it back in the same state. The sealed form (all integers little-endian):
 *
 *   offset  size  field
 *        0     8  magic "CCMSEVGC"
 *        8     2  format version (1)
 *       10     2  reserved, zero
 *       12    32  platform: SHA-256("ccm-guest-context-platform" ‖ CHIP_ID) of the sealing chip
 *       44    12  AES-GCM nonce
 *       56     4  N, the length of the sealed body
 *       60     N  body, AES-256-GCM under the chip's context key (see `guest/context-body.ts`)
 *   60 + N    16  GCM tag; the additional data is bytes 0..59
 *
 * Exported: SEV and SEV-ES guests in LSECRET, RUNNING, SUPDATE, RUPDATE or SENT, whole — memory, VEK,
 * ASID, launch keys and measurement, transport keys and replay state — so an SUPDATE context comes back
 * in SUPDATE and SEND_FINISH or SEND_CANCEL end it as they would have. Not exported: LUPDATE (GCTX.LD is
 * a running SHA-256 whose intermediate state cannot be saved) and SNP guests.
 */

export const GUEST_CONTEXT_MAGIC = Buffer.from('CCMSEVGC', 'ascii');
export const GUEST_CONTEXT_VERSION = 1;
const PLATFORM_OFFSET = 12;
const NONCE_OFFSET = 44;
const NONCE_SIZE = 12;
const LENGTH_OFFSET = 56;
/** Bytes before the sealed body (all of them authenticated). */
export const GUEST_CONTEXT_HEADER_SIZE = 60;
const TAG_SIZE = 16;

const EXPORTABLE: ReadonlySet<string> = new Set(['LSECRET', 'RUNNING', 'SUPDATE', 'RUPDATE', 'SENT']);

const refuse = (fault: SevGuestContextFault, code: SevStatusName, detail: string, cause?: unknown) =>
  new SevGuestContextError(fault, code, detail, { cause });

/** The 32 bytes that name the sealing chip in the header. */
function platformTag(fw: Firmware): Buffer {
  return createHash('sha256').update('ccm-guest-context-platform').update(fw.store.chipId).digest();
}

/** Seals one guest's context (see the format above); the guest stays in the firmware unchanged. */
export function exportGuest(fw: Firmware, ref: GuestRef): Buffer {
  const ctx = fw.guest('GUEST_STATUS', ref);
  if (ctx.kind === 'snp' || !EXPORTABLE.has(ctx.state)) {
    throw refuse(
      'not-exportable',
      ctx.kind === 'snp' ? 'UNSUPPORTED' : 'INVALID_GUEST_STATE',
      `guest ${ctx.handle} (${ctx.kind}, ${ctx.state}) cannot be exported`,
    );
  }
  const header = Buffer.alloc(GUEST_CONTEXT_HEADER_SIZE);
  GUEST_CONTEXT_MAGIC.copy(header, 0);
  header.writeUInt16LE(GUEST_CONTEXT_VERSION, 8);
  platformTag(fw).copy(header, PLATFORM_OFFSET);
  const nonce = Buffer.from(fw.random(NONCE_SIZE));
  nonce.copy(header, NONCE_OFFSET);
  const body = encodeContextBody(ctx);
  header.writeUInt32LE(body.length, LENGTH_OFFSET);
  const cipher = createCipheriv('aes-256-gcm', fw.store.contextKey, nonce);
  cipher.setAAD(header);
  const sealed = Buffer.concat([cipher.update(body), cipher.final()]);
  return Buffer.concat([header, sealed, cipher.getAuthTag()]);
}

/** Checks the header and the seal; the body's plaintext. */
function unseal(fw: Firmware, bytes: Uint8Array): Buffer {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const minimum = GUEST_CONTEXT_HEADER_SIZE + TAG_SIZE;
  if (b.length < minimum) {
    throw refuse('truncated', 'INVALID_LENGTH', `${b.length} bytes, a context has at least ${minimum}`);
  }
  if (!b.subarray(0, 8).equals(GUEST_CONTEXT_MAGIC)) {
    throw refuse('malformed', 'INVALID_PARAM', 'not a sealed guest context (bad magic)');
  }
  const version = b.readUInt16LE(8);
  if (version !== GUEST_CONTEXT_VERSION) {
    throw refuse(
      'version',
      'UNSUPPORTED',
      `format version ${version}, this firmware reads ${GUEST_CONTEXT_VERSION}`,
    );
  }
  if (b.readUInt16LE(10) !== 0) throw refuse('malformed', 'INVALID_PARAM', 'reserved field is not zero');
  const expected = minimum + b.readUInt32LE(LENGTH_OFFSET);
  if (b.length < expected) {
    throw refuse('truncated', 'INVALID_LENGTH', `${b.length} bytes, the header announces ${expected}`);
  }
  if (b.length > expected) {
    throw refuse('malformed', 'INVALID_PARAM', `${b.length - expected} bytes after the end of the context`);
  }
  if (!b.subarray(PLATFORM_OFFSET, NONCE_OFFSET).equals(platformTag(fw))) {
    throw refuse('foreign-platform', 'SECURE_DATA_INVALID', 'sealed by another chip');
  }
  const decipher = createDecipheriv(
    'aes-256-gcm',
    fw.store.contextKey,
    b.subarray(NONCE_OFFSET, LENGTH_OFFSET),
  );
  decipher.setAAD(b.subarray(0, GUEST_CONTEXT_HEADER_SIZE));
  decipher.setAuthTag(b.subarray(b.length - TAG_SIZE));
  try {
    return Buffer.concat([
      decipher.update(b.subarray(GUEST_CONTEXT_HEADER_SIZE, b.length - TAG_SIZE)),
      decipher.final(),
    ]);
  } catch (cause) {
    throw refuse(
      'integrity',
      'SECURE_DATA_INVALID',
      'the seal does not verify: the context was changed',
      cause,
    );
  }
}

/** Refuses an import the firmware has no room for, or whose handle or ASID a live guest holds. */
function checkRoom(fw: Firmware, handle: number, asid: number | undefined): void {
  if (fw.platformState !== 'INIT' && fw.platformState !== 'WORKING') {
    throw refuse(
      'platform-state',
      'INVALID_PLATFORM_STATE',
      `platform is ${fw.platformState}, needs INIT or WORKING`,
    );
  }
  if (fw.guests.has(handle)) throw refuse('handle-in-use', 'INVALID_GUEST', `handle ${handle} is in use`);
  if (asid !== undefined) {
    const owner = fw.asidOwner.get(asid);
    if (owner !== undefined)
      throw refuse('asid-in-use', 'ASID_OWNED', `ASID ${asid} belongs to guest ${owner}`);
    if (fw.asidsToFlush.has(asid))
      throw refuse('asid-in-use', 'DF_FLUSH_REQUIRED', `ASID ${asid} awaits DF_FLUSH`);
    if (asid < 1 || asid > fw.config.maxAsid)
      throw refuse('malformed', 'INVALID_ASID', `ASID ${asid} out of range`);
  }
  if (fw.guests.size >= fw.config.maxAsid) throw refuse('no-room', 'RESOURCE_LIMIT', 'no guest context left');
}

/** Takes back a context {@link exportGuest} sealed on this chip, in the state it was exported in. */
export function importGuest(fw: Firmware, bytes: Uint8Array): GuestContext {
  const body = unseal(fw, bytes);
  let decoded: ReturnType<typeof decodeContextBody>;
  let memory: GuestMemory;
  try {
    decoded = decodeContextBody(body);
    memory = new GuestMemory(decoded.memoryBytes, decoded.context.vek);
    for (const page of decoded.pages) memory.restorePage(page);
  } catch (cause) {
    throw refuse(
      'malformed',
      'INVALID_PARAM',
      `the sealed body does not decode: ${(cause as Error).message}`,
      cause,
    );
  }
  checkRoom(fw, decoded.context.handle, decoded.context.asid);
  const ctx: GuestContext = { ...decoded.context, memory };
  fw.insertGuest(ctx);
  return ctx;
}
