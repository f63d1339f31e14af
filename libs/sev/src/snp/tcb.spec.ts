import { describe, expect, it } from 'vitest';
import {
  SnpInvalidFieldError,
  SnpReservedFieldError,
  SnpTcbLayoutMismatchError,
  SnpTruncatedInputError,
} from './errors.js';
import { generationFromCpuid, generationFromProductName, tcbLayoutOf } from './generation.js';
import {
  decodeTcbVersion,
  encodeTcbVersion,
  formatTcb,
  tcbAtLeast,
  tcbDifferences,
  tcbShortfall,
  type TcbVersion,
} from './tcb.js';

const bytes = (...b: number[]) => Uint8Array.from(b);
const milan = (bootLoader: number, tee: number, snp: number, microcode: number): TcbVersion => ({
  layout: 'milan-genoa',
  bootLoader,
  tee,
  snp,
  microcode,
});
const turin = (fmc: number, bootLoader: number, tee: number, snp: number, microcode: number): TcbVersion => ({
  layout: 'turin',
  fmc,
  bootLoader,
  tee,
  snp,
  microcode,
});

describe('TCB_VERSION', () => {
  it('decodes the Milan/Genoa layout (virtee vector 03 00 00 00 00 00 08 73)', () => {
    expect(decodeTcbVersion(bytes(3, 0, 0, 0, 0, 0, 8, 0x73), 'milan-genoa')).toEqual(milan(3, 0, 8, 0x73));
  });

  it('decodes the Turin layout: fmc, bl, tee, snp in bytes 0-3, ucode in byte 7', () => {
    expect(decodeTcbVersion(bytes(1, 2, 3, 4, 0, 0, 0, 9), 'turin')).toEqual(turin(1, 2, 3, 4, 9));
  });

  it.each([
    ['milan-genoa', [2, 3, 4, 5]],
    ['turin', [4, 5, 6]],
  ] as const)('rejects set reserved bytes in the %s layout', (layout, reserved) => {
    for (const i of reserved) {
      const b = new Uint8Array(8);
      b[i] = 1;
      expect(() => decodeTcbVersion(b, layout)).toThrow(SnpReservedFieldError);
    }
  });

  it('round-trips both layouts and rejects out-of-range or misplaced SPLs', () => {
    for (const t of [milan(3, 0, 8, 0x73), milan(255, 1, 24, 0xd9), turin(1, 2, 3, 4, 9)]) {
      expect(decodeTcbVersion(encodeTcbVersion(t), t.layout)).toEqual(t);
    }
    expect(() => encodeTcbVersion(milan(256, 0, 0, 0))).toThrow(SnpInvalidFieldError);
    expect(() => encodeTcbVersion({ ...milan(1, 0, 0, 0), fmc: 1 })).toThrow(SnpInvalidFieldError);
    expect(() => decodeTcbVersion(new Uint8Array(7), 'turin')).toThrow(SnpTruncatedInputError);
  });

  it('orders TCBs componentwise', () => {
    const base = milan(3, 0, 8, 0x73);
    expect(tcbAtLeast(base, base)).toBe(true);
    expect(tcbAtLeast(milan(4, 0, 8, 0x73), base)).toBe(true);
    expect(tcbAtLeast(milan(4, 0, 7, 0x80), base)).toBe(false); // higher ucode does not buy back a lower SNP
    expect(tcbShortfall(milan(4, 0, 7, 0x70), base)).toEqual([
      { field: 'snp', expected: 8, actual: 7 },
      { field: 'microcode', expected: 0x73, actual: 0x70 },
    ]);
    expect(tcbAtLeast(turin(2, 1, 1, 1, 1), turin(1, 1, 1, 1, 1))).toBe(true);
    expect(tcbAtLeast(turin(0, 1, 1, 1, 1), turin(1, 1, 1, 1, 1))).toBe(false);
  });

  it('refuses to compare a Turin TCB with a Milan one', () => {
    expect(() => tcbAtLeast(turin(1, 3, 0, 8, 0x73), milan(3, 0, 8, 0x73))).toThrow(
      SnpTcbLayoutMismatchError,
    );
    expect(() => tcbDifferences(turin(1, 3, 0, 8, 0x73), milan(3, 0, 8, 0x73))).toThrow(
      SnpTcbLayoutMismatchError,
    );
  });

  it('lists differing components and formats for humans', () => {
    expect(tcbDifferences(milan(3, 0, 8, 0x73), milan(3, 0, 8, 0x73))).toEqual([]);
    expect(tcbDifferences(milan(3, 1, 8, 0x73), milan(3, 0, 8, 0x73))).toEqual([
      { field: 'tee', expected: 0, actual: 1 },
    ]);
    expect(formatTcb(milan(3, 0, 8, 0x73))).toBe('bl=3 tee=0 snp=8 ucode=0x73 (0300000000000873)');
    expect(formatTcb(turin(1, 2, 3, 4, 9))).toBe('fmc=1 bl=2 tee=3 snp=4 ucode=0x9 (0102030400000009)');
  });
});

describe('product lines', () => {
  it.each([
    [0x19, 0x01, 'milan'],
    [0x19, 0x0f, 'milan'],
    [0x19, 0x11, 'genoa'],
    [0x19, 0xa0, 'genoa'],
    [0x1a, 0x02, 'turin'],
    [0x1a, 0x11, 'turin'],
    [0x19, 0x21, undefined],
    [0x17, 0x31, undefined],
  ] as const)('CPUID family 0x%s model 0x%s is %s', (family, model, generation) => {
    expect(generationFromCpuid(family, model)).toBe(generation);
  });

  it('reads productName extensions and maps lines to layouts', () => {
    expect(['Milan-B0', 'Milan', 'Genoa', 'Turin'].map(generationFromProductName)).toEqual([
      'milan',
      'milan',
      'genoa',
      'turin',
    ]);
    expect(() => generationFromProductName('Rome')).toThrow();
    expect(['milan', 'genoa', 'turin'].map((g) => tcbLayoutOf(g as 'milan'))).toEqual([
      'milan-genoa',
      'milan-genoa',
      'turin',
    ]);
  });
});
