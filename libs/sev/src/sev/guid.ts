import { SevInvalidParamError } from './errors.js';
import { requireExactLength } from './bytes.js';

/** GUIDs of the SEV launch formats (text form; stored in EFI mixed-endian byte order). */
export const SevGuid = {
  /** OVMF footer GUID table terminator. */
  OVMF_TABLE_FOOTER: '96b582de-1fb2-45f7-baea-a366c55a082d',
  /** SEV-ES AP reset block (LE32 reset address). */
  SEV_ES_RESET_BLOCK: '00f771de-1a7e-4fcb-890e-68c77e2fb44e',
  /** SEV secret area (LE32 base, LE32 size). */
  SEV_SECRET_AREA: '4c2eb361-7d9b-4cc3-8081-127c90d3d294',
  /** SEV hashes-table area (LE32 base, LE32 size), SEV_HASH_TABLE_RV_GUID. */
  SEV_HASH_TABLE_AREA: '7255371f-3a3b-4b04-927b-1da6efa8d454',
  /** SEV metadata (LE32 offset from the end of the image to the `ASEV` header). */
  SEV_METADATA: 'dc886566-984a-4798-a75e-5585a7bf67cc',
  /** Kernel-hashes table header. */
  HASH_TABLE_HEADER: '9438d606-4f22-4cc9-b479-a793d411fd21',
  HASH_TABLE_CMDLINE: '97d02dd8-bd20-4c94-aa78-e7714d36ab2a',
  HASH_TABLE_INITRD: '44baf731-3a2f-4bd7-9af1-41e29169781d',
  HASH_TABLE_KERNEL: '4de79437-abd2-427f-b835-d5b172d2045b',
  /** EFI secret table header. */
  EFI_SECRET_TABLE: '1e74f542-71dd-4d66-963e-ef4287ff173b',
  /** Disk passphrase entry (grub `cryptodisk` efisecret, Linux `efi_secret`). */
  DISK_PASSPHRASE: '736869e5-84f0-4973-92ec-06879ce3da0b',
} as const;

const GUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Size of a GUID in bytes. */
export const SEV_GUID_SIZE = 16;

/** 16 bytes of a GUID in EFI mixed-endian order (first three groups byte-swapped, like `uuid.bytes_le`). */
export function sevGuidToBytes(guid: string): Buffer {
  if (!GUID_TEXT.test(guid)) throw new SevInvalidParamError('guid', `"${guid}" is not a GUID`);
  const hex = guid.replace(/-/g, '');
  const raw = Buffer.from(hex, 'hex');
  raw.subarray(0, 4).reverse();
  raw.subarray(4, 6).reverse();
  raw.subarray(6, 8).reverse();
  return raw;
}

/** Lower-case text form of 16 mixed-endian GUID bytes. */
export function sevGuidFromBytes(bytes: Uint8Array): string {
  requireExactLength(bytes, SEV_GUID_SIZE, 'GUID');
  const raw = Buffer.from(bytes);
  raw.subarray(0, 4).reverse();
  raw.subarray(4, 6).reverse();
  raw.subarray(6, 8).reverse();
  const h = raw.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
