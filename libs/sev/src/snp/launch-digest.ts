import { createHash } from 'node:crypto';
import { writeU16, writeU64 } from './bytes.js';
import { SnpInvalidFieldError, SnpTruncatedInputError } from './errors.js';

/** SNP_LAUNCH_UPDATE page types (SNP ABI §8.17, spec 9.7). */
export const SNP_PAGE_TYPE = {
  NORMAL: 1,
  VMSA: 2,
  ZERO: 3,
  UNMEASURED: 4,
  SECRETS: 5,
  CPUID: 6,
} as const;

/** A page type name. */
export type SnpPageType = keyof typeof SNP_PAGE_TYPE;

/** Guest page size the launch digest is computed over. */
export const SNP_PAGE_SIZE = 4096;
/** Size of the launch digest (SHA-384). */
export const SNP_LAUNCH_DIGEST_SIZE = 48;
/** Size of the PAGE_INFO structure hashed for every page. */
export const SNP_PAGE_INFO_SIZE = 0x70;
/** GPA the firmware uses for VMSA pages in PAGE_INFO. */
export const SNP_VMSA_GPA = 0xffff_ffff_f000n;
/** Firmware images are mapped to end at 4 GiB. */
export const SNP_FIRMWARE_END_GPA = 0x1_0000_0000n;

/** PAGE_INFO field offsets. */
export const SNP_PAGE_INFO = {
  DIGEST_CUR: 0x00,
  CONTENTS: 0x30,
  LENGTH: 0x60,
  PAGE_TYPE: 0x62,
  IMI_PAGE: 0x63,
  VMPL3_PERMS: 0x64,
  VMPL2_PERMS: 0x65,
  VMPL1_PERMS: 0x66,
  GPA: 0x68,
} as const;

/** Per-page options beyond type and address (all zero for QEMU/OVMF guests). */
export interface SnpPageOptions {
  readonly imi?: boolean;
  readonly vmpl3Perms?: number;
  readonly vmpl2Perms?: number;
  readonly vmpl1Perms?: number;
}

/** One PAGE_INFO, as the firmware builds it for SNP_LAUNCH_UPDATE. */
export interface SnpPageInfo extends SnpPageOptions {
  readonly digestCur: Uint8Array;
  readonly contents: Uint8Array;
  readonly pageType: SnpPageType;
  readonly gpa: bigint;
}

/** Encodes a PAGE_INFO to its 0x70 bytes (VMPL permissions in the VMPL3, VMPL2, VMPL1 order). */
export function encodePageInfo(info: SnpPageInfo): Uint8Array {
  for (const [name, value] of [
    ['DIGEST_CUR', info.digestCur],
    ['CONTENTS', info.contents],
  ] as const) {
    if (value.length !== SNP_LAUNCH_DIGEST_SIZE)
      throw new SnpTruncatedInputError(`PAGE_INFO.${name}`, SNP_LAUNCH_DIGEST_SIZE, value.length);
  }
  if (info.gpa < 0n || info.gpa % BigInt(SNP_PAGE_SIZE) !== 0n || info.gpa >= 1n << 64n) {
    throw new SnpInvalidFieldError(
      'PAGE_INFO.GPA',
      `0x${info.gpa.toString(16)}`,
      'must be a 4 KiB-aligned 64-bit address',
    );
  }
  for (const [name, value] of Object.entries({
    vmpl3Perms: info.vmpl3Perms,
    vmpl2Perms: info.vmpl2Perms,
    vmpl1Perms: info.vmpl1Perms,
  })) {
    if (value !== undefined && (!Number.isInteger(value) || value < 0 || value > 0xff)) {
      throw new SnpInvalidFieldError(`PAGE_INFO.${name}`, String(value), 'must be one byte');
    }
  }
  const o = SNP_PAGE_INFO;
  const out = new Uint8Array(SNP_PAGE_INFO_SIZE);
  out.set(info.digestCur, o.DIGEST_CUR);
  out.set(info.contents, o.CONTENTS);
  writeU16(out, o.LENGTH, SNP_PAGE_INFO_SIZE);
  out[o.PAGE_TYPE] = SNP_PAGE_TYPE[info.pageType];
  out[o.IMI_PAGE] = info.imi ? 1 : 0;
  out[o.VMPL3_PERMS] = info.vmpl3Perms ?? 0;
  out[o.VMPL2_PERMS] = info.vmpl2Perms ?? 0;
  out[o.VMPL1_PERMS] = info.vmpl1Perms ?? 0;
  writeU64(out, o.GPA, info.gpa);
  return out;
}

const sha384 = (data: Uint8Array): Uint8Array => new Uint8Array(createHash('sha384').update(data).digest());
const ZERO_CONTENTS = new Uint8Array(SNP_LAUNCH_DIGEST_SIZE);

/**
 * The SNP launch digest (report MEASUREMENT) built page by page, exactly as SNP_LAUNCH_UPDATE extends
 * it: `LD = SHA-384(PAGE_INFO{LD, CONTENTS, ...})`, starting from 48 zero bytes. CONTENTS is SHA-384 of
 * the page for NORMAL and VMSA pages and zero for ZERO, UNMEASURED, SECRETS and CPUID pages.
 */
export class SnpLaunchDigest {
  #digest: Uint8Array = new Uint8Array(SNP_LAUNCH_DIGEST_SIZE);

  /** Starts from a given digest (e.g. to continue a chain); defaults to 48 zero bytes. */
  constructor(initial?: Uint8Array) {
    if (initial) {
      if (initial.length !== SNP_LAUNCH_DIGEST_SIZE)
        throw new SnpTruncatedInputError('launch digest', SNP_LAUNCH_DIGEST_SIZE, initial.length);
      this.#digest = Uint8Array.from(initial);
    }
  }

  /** Extends with one page of the given type whose CONTENTS field is already known. */
  updatePage(pageType: SnpPageType, gpa: bigint, contents: Uint8Array, options: SnpPageOptions = {}): this {
    this.#digest = sha384(encodePageInfo({ ...options, digestCur: this.#digest, contents, pageType, gpa }));
    return this;
  }

  /** Extends with NORMAL pages: `data` (a multiple of 4 KiB) loaded at `gpa`, one PAGE_INFO per page. */
  updateNormal(gpa: bigint, data: Uint8Array, options: SnpPageOptions = {}): this {
    if (data.length % SNP_PAGE_SIZE !== 0) {
      throw new SnpInvalidFieldError(
        'NORMAL page data',
        `${data.length} bytes`,
        'must be a whole number of 4 KiB pages',
      );
    }
    for (let off = 0; off < data.length; off += SNP_PAGE_SIZE) {
      const page = data.subarray(off, off + SNP_PAGE_SIZE);
      this.updatePage('NORMAL', gpa + BigInt(off), sha384(page), options);
    }
    return this;
  }

  /** Extends with `count` pages of a type whose CONTENTS is zero (ZERO, UNMEASURED, SECRETS, CPUID). */
  updateUnmeasured(pageType: 'ZERO' | 'UNMEASURED' | 'SECRETS' | 'CPUID', gpa: bigint, count = 1): this {
    for (let i = 0; i < count; i++) this.updatePage(pageType, gpa + BigInt(i * SNP_PAGE_SIZE), ZERO_CONTENTS);
    return this;
  }

  /** Extends with one vCPU's VMSA page (4 KiB), at the fixed VMSA GPA. */
  updateVmsa(vmsa: Uint8Array): this {
    if (vmsa.length !== SNP_PAGE_SIZE)
      throw new SnpTruncatedInputError('VMSA page', SNP_PAGE_SIZE, vmsa.length);
    return this.updatePage('VMSA', SNP_VMSA_GPA, sha384(vmsa));
  }

  /** The current digest (a copy). */
  digest(): Uint8Array {
    return Uint8Array.from(this.#digest);
  }
}

/**
 * Launch digest of a firmware image alone, loaded as NORMAL pages ending at 4 GiB (how QEMU maps OVMF);
 * the first step of every OVMF guest's measurement.
 */
export function snpFirmwareDigest(firmware: Uint8Array, initial?: Uint8Array): Uint8Array {
  const gpa = SNP_FIRMWARE_END_GPA - BigInt(firmware.length);
  return new SnpLaunchDigest(initial).updateNormal(gpa, firmware).digest();
}
