import { readU32, requireAtLeast } from './bytes.js';
import { SevFirmwareImageError } from './errors.js';
import { SEV_GUID_SIZE, SevGuid, sevGuidFromBytes } from './guid.js';

/** The footer table ends this many bytes before the end of the image (reset-vector area). */
export const OVMF_FOOTER_END_FROM_IMAGE_END = 0x20;
/** Size of an entry trailer and of the footer itself: LE16 size ‖ GUID. */
const TRAILER_SIZE = 2 + SEV_GUID_SIZE;

/** One entry of OVMF's footer GUID table. */
export interface OvmfTableEntry {
  readonly guid: string;
  /** Entry data (without the LE16 size and GUID trailer). */
  readonly data: Uint8Array;
}

/**
 * Walks OVMF's footer GUID table: the footer GUID sits at [end−0x30, end−0x20) preceded by an LE16 total
 * size; entries (`data ‖ LE16 size ‖ GUID`) precede it and are read backwards. Returns entries in the
 * order read (nearest the footer first); an image without the footer yields an empty list.
 */
export function parseOvmfFooterTable(image: Uint8Array): OvmfTableEntry[] {
  const footerEnd = image.length - OVMF_FOOTER_END_FROM_IMAGE_END;
  const footerStart = footerEnd - TRAILER_SIZE;
  if (footerStart < 0) return [];
  const guid = sevGuidFromBytes(image.subarray(footerEnd - SEV_GUID_SIZE, footerEnd));
  if (guid !== SevGuid.OVMF_TABLE_FOOTER) return [];
  const total = image[footerStart] | (image[footerStart + 1] << 8);
  const tableStart = footerEnd - total;
  if (total < TRAILER_SIZE || tableStart < 0)
    throw new SevFirmwareImageError(`footer table size ${total} is invalid`);
  const entries: OvmfTableEntry[] = [];
  for (let end = footerStart; end > tableStart;) {
    const size = image[end - TRAILER_SIZE] | (image[end - TRAILER_SIZE + 1] << 8);
    if (size < TRAILER_SIZE || end - size < tableStart) {
      throw new SevFirmwareImageError(`footer table entry size ${size} at 0x${end.toString(16)} is invalid`);
    }
    entries.push({
      guid: sevGuidFromBytes(image.subarray(end - SEV_GUID_SIZE, end)),
      data: image.subarray(end - size, end - TRAILER_SIZE),
    });
    end -= size;
  }
  return entries;
}

/** A guest-physical area announced by OVMF. */
export interface OvmfArea {
  readonly base: number;
  readonly size: number;
}

/** What the footer table says about SEV: the areas QEMU and the guest owner need. */
export interface OvmfSevInfo {
  /** Kernel-hashes table area; absent (or size 0) means OVMF cannot do measured direct boot. */
  readonly hashesTable?: OvmfArea;
  /** Launch-secret area, the default GPA of `sev-inject-launch-secret`. */
  readonly secretArea?: OvmfArea;
  /** SEV-ES AP reset address (QEMU: CS base = addr & 0xffff0000, IP = addr & 0xffff). */
  readonly sevEsResetAddress?: number;
}

function area(entry: OvmfTableEntry | undefined): OvmfArea | undefined {
  if (!entry) return undefined;
  requireAtLeast(entry.data, 8, `OVMF table entry ${entry.guid}`);
  return { base: readU32(entry.data, 0), size: readU32(entry.data, 4) };
}

/** Reads the SEV entries of the footer table. */
export function findOvmfSevInfo(image: Uint8Array): OvmfSevInfo {
  const entries = parseOvmfFooterTable(image);
  const byGuid = (g: string) => entries.find((e) => e.guid === g);
  const reset = byGuid(SevGuid.SEV_ES_RESET_BLOCK);
  if (reset) requireAtLeast(reset.data, 4, 'SEV-ES reset block');
  return {
    hashesTable: area(byGuid(SevGuid.SEV_HASH_TABLE_AREA)),
    secretArea: area(byGuid(SevGuid.SEV_SECRET_AREA)),
    sevEsResetAddress: reset ? readU32(reset.data, 0) : undefined,
  };
}
