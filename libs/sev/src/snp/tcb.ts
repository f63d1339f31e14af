import { requireExactLength, toHex } from './bytes.js';
import {
  SnpInvalidFieldError,
  SnpReservedFieldError,
  type SnpTcbFieldDifference,
  SnpTcbLayoutMismatchError,
} from './errors.js';
import type { TcbLayout } from './generation.js';

/** Size of a TCB_VERSION structure in bytes. */
export const TCB_VERSION_SIZE = 8;

/** Byte positions of each security patch level (SPL) inside TCB_VERSION, per layout (spec 9.2). */
export const TCB_BYTE_OFFSETS = {
  'milan-genoa': { bootLoader: 0, tee: 1, snp: 6, microcode: 7 },
  turin: { fmc: 0, bootLoader: 1, tee: 2, snp: 3, microcode: 7 },
} as const;

/** Reserved (must-be-zero) byte positions inside TCB_VERSION, per layout. */
export const TCB_RESERVED_BYTES: Readonly<Record<TcbLayout, readonly number[]>> = {
  'milan-genoa': [2, 3, 4, 5],
  turin: [4, 5, 6],
};

/**
 * A decoded TCB_VERSION: the security patch levels of the firmware components. `fmc` exists only in the
 * Turin layout. Values are 0–255.
 */
export interface TcbVersion {
  readonly layout: TcbLayout;
  /** FMC SPL (Turin and later only). */
  readonly fmc?: number;
  readonly bootLoader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
}

/** TCB component names in the order they are compared and reported. */
export const TCB_COMPONENTS = ['fmc', 'bootLoader', 'tee', 'snp', 'microcode'] as const;

/** One TCB component name. */
export type TcbComponent = (typeof TCB_COMPONENTS)[number];

/** Decodes an 8-byte TCB_VERSION in the given layout; reserved bytes must be zero. */
export function decodeTcbVersion(bytes: Uint8Array, layout: TcbLayout, field = 'TCB_VERSION'): TcbVersion {
  requireExactLength(bytes, TCB_VERSION_SIZE, field);
  for (const i of TCB_RESERVED_BYTES[layout]) {
    if (bytes[i] !== 0) throw new SnpReservedFieldError(`${field} byte ${i} (${layout} layout)`, i);
  }
  const spls: Record<string, number> = {};
  for (const [name, at] of Object.entries(TCB_BYTE_OFFSETS[layout])) spls[name] = bytes[at];
  return { layout, ...spls } as unknown as TcbVersion;
}

function spl(tcb: TcbVersion, field: TcbComponent): number {
  const value = tcb[field] ?? 0;
  if (!Number.isInteger(value) || value < 0 || value > 0xff) {
    throw new SnpInvalidFieldError(`TCB_VERSION.${field}`, String(value), 'an SPL is one byte (0-255)');
  }
  return value;
}

/** Encodes a TCB_VERSION to its 8 bytes (reserved bytes zero). */
export function encodeTcbVersion(tcb: TcbVersion): Uint8Array {
  if (tcb.layout !== 'turin' && tcb.fmc !== undefined) {
    throw new SnpInvalidFieldError(
      'TCB_VERSION.fmc',
      String(tcb.fmc),
      'the Milan/Genoa layout has no FMC SPL',
    );
  }
  const out = new Uint8Array(TCB_VERSION_SIZE);
  const offsets: Readonly<Record<string, number>> = TCB_BYTE_OFFSETS[tcb.layout];
  for (const [name, at] of Object.entries(offsets)) out[at] = spl(tcb, name as TcbComponent);
  return out;
}

/**
 * The components in which `actual` is below `minimum` (empty when `actual >= minimum` in all of them).
 * Throws {@link SnpTcbLayoutMismatchError} when the layouts differ: a Turin TCB and a Milan TCB are not
 * ordered.
 */
export function tcbShortfall(actual: TcbVersion, minimum: TcbVersion): SnpTcbFieldDifference[] {
  if (actual.layout !== minimum.layout) throw new SnpTcbLayoutMismatchError(actual.layout, minimum.layout);
  const out: SnpTcbFieldDifference[] = [];
  for (const field of TCB_COMPONENTS) {
    const a = actual[field] ?? 0;
    const m = minimum[field] ?? 0;
    if (a < m) out.push({ field, expected: m, actual: a });
  }
  return out;
}

/**
 * True when every SPL of `a` is at least the matching SPL of `b` (componentwise, as the firmware and KDS
 * order TCBs); used for "target platform TCB >= source platform TCB" before a migration.
 */
export function tcbAtLeast(a: TcbVersion, b: TcbVersion): boolean {
  return tcbShortfall(a, b).length === 0;
}

/** The components in which two TCBs of the same layout differ (`expected` from `b`, `actual` from `a`). */
export function tcbDifferences(a: TcbVersion, b: TcbVersion): SnpTcbFieldDifference[] {
  if (a.layout !== b.layout) throw new SnpTcbLayoutMismatchError(a.layout, b.layout);
  return TCB_COMPONENTS.filter((f) => (a[f] ?? 0) !== (b[f] ?? 0)).map((field) => ({
    field,
    expected: b[field] ?? 0,
    actual: a[field] ?? 0,
  }));
}

/** A short human form, e.g. `bl=3 tee=0 snp=8 ucode=0x73 (0300000000000873)`. */
export function formatTcb(tcb: TcbVersion): string {
  const fmc = tcb.layout === 'turin' ? `fmc=${tcb.fmc ?? 0} ` : '';
  const hex = toHex(encodeTcbVersion(tcb));
  return `${fmc}bl=${tcb.bootLoader} tee=${tcb.tee} snp=${tcb.snp} ucode=0x${tcb.microcode.toString(16)} (${hex})`;
}
