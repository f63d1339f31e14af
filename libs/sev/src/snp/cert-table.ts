import { isZeroRange, readU32, requireLength, toHex, writeU32 } from './bytes.js';
import { SnpInvalidFieldError, SnpTruncatedInputError } from './errors.js';

/**
 * Certificate table of an SNP extended report (SNP_GET_EXT_REPORT / the `certs` buffer of
 * /dev/sev-guest): entries of GUID(16) ‖ LE32 offset ‖ LE32 length, ended by an all-zero entry, offsets
 * relative to the start of the table. GUIDs are stored in RFC 4122 byte order (as the kernel, QEMU,
 * virtee and go-sev-guest write them), not in EFI mixed-endian order.
 */

/** GUIDs of the well-known entries (spec 9.4). */
export const SNP_CERT_TABLE_GUID = {
  ARK: 'c0b406a4-a803-4952-9743-3fb6014cd0ae',
  ASK: '4ab7b379-bbac-4fe4-a02f-05aef327c782',
  VCEK: '63da758d-e664-4564-adc5-f4b93be8accd',
  VLEK: 'a8074bc2-a25a-483e-aae6-39c045a0b8a1',
  CRL: '92f81bc3-5811-4d3d-97ff-d19f88dc67ea',
} as const;

/** Kind of a well-known certificate-table entry. */
export type SnpCertTableKind = keyof typeof SNP_CERT_TABLE_GUID;

/** Size of one table entry (and of the terminator). */
export const SNP_CERT_TABLE_ENTRY_SIZE = 24;

/** One certificate-table entry; `kind` is undefined for GUIDs this library does not name. */
export interface SnpCertTableEntry {
  readonly guid: string;
  readonly kind?: SnpCertTableKind;
  readonly data: Uint8Array;
}

const GUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function guidToString(bytes: Uint8Array): string {
  const h = toHex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function guidToBytes(guid: string): Uint8Array {
  const lower = guid.toLowerCase();
  if (!GUID_PATTERN.test(lower)) throw new SnpInvalidFieldError('certificate table GUID', guid, 'not a GUID');
  return new Uint8Array(Buffer.from(lower.replaceAll('-', ''), 'hex'));
}

function kindOf(guid: string): SnpCertTableKind | undefined {
  return (Object.keys(SNP_CERT_TABLE_GUID) as SnpCertTableKind[]).find(
    (k) => SNP_CERT_TABLE_GUID[k] === guid,
  );
}

/** Parses a certificate table; every entry's data must lie inside `table`. */
export function parseSnpCertTable(table: Uint8Array): SnpCertTableEntry[] {
  const out: SnpCertTableEntry[] = [];
  for (let at = 0; ; at += SNP_CERT_TABLE_ENTRY_SIZE) {
    requireLength(table, at + SNP_CERT_TABLE_ENTRY_SIZE, 'SNP certificate table (missing terminator)');
    if (isZeroRange(table, at, SNP_CERT_TABLE_ENTRY_SIZE)) return out;
    const guid = guidToString(table.subarray(at, at + 16));
    const offset = readU32(table, at + 16);
    const length = readU32(table, at + 20);
    if (offset + length > table.length) {
      throw new SnpTruncatedInputError(`certificate table entry ${guid}`, offset + length, table.length);
    }
    const kind = kindOf(guid);
    out.push({ guid, ...(kind ? { kind } : {}), data: table.slice(offset, offset + length) });
  }
}

/** Encodes a certificate table: the entries, the terminator, then each entry's data in order. */
export function encodeSnpCertTable(
  entries: ReadonlyArray<{ readonly guid: string; readonly data: Uint8Array }>,
): Uint8Array {
  const headerSize = (entries.length + 1) * SNP_CERT_TABLE_ENTRY_SIZE;
  const out = new Uint8Array(headerSize + entries.reduce((n, e) => n + e.data.length, 0));
  let dataAt = headerSize;
  entries.forEach((entry, i) => {
    const at = i * SNP_CERT_TABLE_ENTRY_SIZE;
    out.set(guidToBytes(entry.guid), at);
    writeU32(out, at + 16, dataAt);
    writeU32(out, at + 20, entry.data.length);
    out.set(entry.data, dataAt);
    dataAt += entry.data.length;
  });
  return out;
}
