import { readU32, requireAtLeast, u32le } from './bytes.js';
import { SevInvalidLengthError, SevInvalidParamError, SevReservedBytesError } from './errors.js';
import { SEV_GUID_SIZE, SevGuid, sevGuidFromBytes, sevGuidToBytes } from './guid.js';

/** Header (GUID ‖ LE32 length) and entry header (GUID ‖ LE32 length) size. */
export const SEV_SECRET_HEADER_SIZE = SEV_GUID_SIZE + 4;
/** The table is zero-padded to a multiple of this before encryption. */
export const SEV_SECRET_TABLE_ALIGN = 16;

/** One secret: a GUID naming its consumer, and its bytes. */
export interface SevSecretEntry {
  readonly guid: string;
  readonly data: Uint8Array;
}

/**
 * How the table length is written. `sevctl`: 20 + Σ entry lengths (padding not counted), as the sevctl
 * known answers use. `grub`: the padded total, as grub's docs and James Bottomley's scripts write it.
 * OVMF, grub and Linux `efi_secret` accept both.
 */
export type SevSecretTableConvention = 'sevctl' | 'grub';

/** The disk-passphrase entry grub's `cryptomount -s efisecret` reads (NUL-terminated for grub's C string). */
export function sevDiskPassphraseEntry(
  passphrase: string,
  options: { nulTerminated?: boolean } = {},
): SevSecretEntry {
  const text = Buffer.from(passphrase, 'utf8');
  return {
    guid: SevGuid.DISK_PASSPHRASE,
    data: options.nulTerminated ? Buffer.concat([text, Buffer.of(0)]) : text,
  };
}

/**
 * The EFI secret table OVMF exposes to the guest: header GUID `1e74f542…`, LE32 length, then per entry
 * GUID ‖ LE32 (20 + data length) ‖ data; zero-padded to a multiple of 16. `maxSize` bounds the padded
 * size (e.g. the OVMF secret area size).
 */
export function buildSevSecretTable(
  entries: readonly SevSecretEntry[],
  options: { convention?: SevSecretTableConvention; maxSize?: number } = {},
): Buffer {
  if (entries.length === 0) throw new SevInvalidParamError('entries', 'at least one secret is needed');
  const parts = entries.flatMap((e) => [
    sevGuidToBytes(e.guid),
    u32le(SEV_SECRET_HEADER_SIZE + e.data.length),
    e.data,
  ]);
  const body = Buffer.concat(parts);
  const unpadded = SEV_SECRET_HEADER_SIZE + body.length;
  const padded = Math.ceil(unpadded / SEV_SECRET_TABLE_ALIGN) * SEV_SECRET_TABLE_ALIGN;
  if (options.maxSize !== undefined && padded > options.maxSize) {
    throw new SevInvalidLengthError('secret table', `at most ${options.maxSize}`, padded);
  }
  const length = options.convention === 'grub' ? padded : unpadded;
  const table = Buffer.alloc(padded);
  sevGuidToBytes(SevGuid.EFI_SECRET_TABLE).copy(table, 0);
  table.writeUInt32LE(length, SEV_GUID_SIZE);
  body.copy(table, SEV_SECRET_HEADER_SIZE);
  return table;
}

/**
 * Reads a secret table as the guest would (either length convention). Bytes after the last entry up to
 * the padded end must be zero.
 */
export function parseSevSecretTable(table: Uint8Array): SevSecretEntry[] {
  requireAtLeast(table, SEV_SECRET_HEADER_SIZE, 'secret table');
  if (sevGuidFromBytes(table.subarray(0, SEV_GUID_SIZE)) !== SevGuid.EFI_SECRET_TABLE) {
    throw new SevInvalidParamError('secret table', 'header GUID is not the EFI secret table GUID');
  }
  const length = readU32(table, SEV_GUID_SIZE);
  if (length < SEV_SECRET_HEADER_SIZE || length > table.length) {
    throw new SevInvalidLengthError('secret table length field', `20..${table.length}`, length);
  }
  const entries: SevSecretEntry[] = [];
  let off = SEV_SECRET_HEADER_SIZE;
  while (
    length - off >= SEV_SECRET_HEADER_SIZE &&
    table.subarray(off, off + SEV_GUID_SIZE).some((b) => b !== 0)
  ) {
    const size = readU32(table, off + SEV_GUID_SIZE);
    if (size < SEV_SECRET_HEADER_SIZE || off + size > length) {
      throw new SevInvalidLengthError(`secret entry at 0x${off.toString(16)}`, `20..${length - off}`, size);
    }
    const guid = sevGuidFromBytes(table.subarray(off, off + SEV_GUID_SIZE));
    entries.push({ guid, data: Uint8Array.from(table.subarray(off + SEV_SECRET_HEADER_SIZE, off + size)) });
    off += size;
  }
  for (let i = off; i < table.length; i++) {
    if (table[i] !== 0) throw new SevReservedBytesError('secret table padding', i);
  }
  return entries;
}
