import { createHash } from 'node:crypto';
import { SevGuid, sevGuidToBytes } from './guid.js';

/** Table length field: 18-byte header + three 50-byte entries. */
export const SEV_HASH_TABLE_LENGTH = 168;
/** Table size as measured: padded to a multiple of 16. */
export const SEV_HASH_TABLE_PADDED_SIZE = 176;
/** Size of one entry: GUID, LE16 length, SHA-256. */
export const SEV_HASH_TABLE_ENTRY_SIZE = 50;

/** What QEMU hashes for measured direct boot (`-kernel`, `-initrd`, `-append`). */
export interface SevKernelHashesInput {
  readonly kernel: Uint8Array;
  /** Absent or empty: SHA-256 of the empty string. */
  readonly initrd?: Uint8Array;
  /** Kernel command line; hashed with a terminating NUL (absent = "" → SHA-256 of one 0x00 byte). */
  readonly cmdline?: string | Uint8Array;
}

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

function entry(guid: string, digest: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16LE(SEV_HASH_TABLE_ENTRY_SIZE);
  return Buffer.concat([sevGuidToBytes(guid), len, digest]);
}

/**
 * The padded 176-byte SEV hashes table: header GUID, LE16 168, then cmdline, initrd and kernel entries
 * (GUID, LE16 50, SHA-256), zero-padded. QEMU measures it as its own LAUNCH_UPDATE_DATA after OVMF.
 */
export function buildSevKernelHashesTable(input: SevKernelHashesInput): Buffer {
  const cmdline =
    typeof input.cmdline === 'string'
      ? Buffer.from(input.cmdline, 'utf8')
      : (input.cmdline ?? Buffer.alloc(0));
  const header = Buffer.alloc(2);
  header.writeUInt16LE(SEV_HASH_TABLE_LENGTH);
  const table = Buffer.concat([
    sevGuidToBytes(SevGuid.HASH_TABLE_HEADER),
    header,
    entry(SevGuid.HASH_TABLE_CMDLINE, sha256(cmdline, Buffer.of(0))),
    entry(SevGuid.HASH_TABLE_INITRD, sha256(input.initrd ?? Buffer.alloc(0))),
    entry(SevGuid.HASH_TABLE_KERNEL, sha256(input.kernel)),
  ]);
  return Buffer.concat([table, Buffer.alloc(SEV_HASH_TABLE_PADDED_SIZE - table.length)]);
}
