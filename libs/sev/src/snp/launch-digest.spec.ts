import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hex, vectorBytes, vectorJson } from './__fixtures__/vectors.js';
import { SnpInvalidFieldError, SnpTruncatedInputError } from './errors.js';
import {
  encodePageInfo,
  SNP_PAGE_INFO_SIZE,
  SNP_PAGE_SIZE,
  SNP_VMSA_GPA,
  SnpLaunchDigest,
  snpFirmwareDigest,
} from './launch-digest.js';

interface DigestKat {
  name: string;
  ovmf_file?: string;
  expected_hex: string;
}
const kats = vectorJson<{ launch_digest_components: DigestKat[] }>('sev/kat/sev-launch-kats.json');
const snpKats = kats.launch_digest_components.filter((k) => k.name.startsWith('snp-'));

const sha384 = (b: Uint8Array) => new Uint8Array(createHash('sha384').update(b).digest());

describe('SNP launch digest known answers', () => {
  it('has at least one SNP KAT in the vectors', () => {
    expect(snpKats.length).toBeGreaterThan(0);
  });

  it.each(snpKats)('$name', (kat) => {
    const ovmf = vectorBytes(kat.ovmf_file!);
    expect(hex(snpFirmwareDigest(ovmf))).toBe(kat.expected_hex);
    // The same through the page-by-page API: OVMF ends at 4 GiB.
    const gpa = 0x1_0000_0000n - BigInt(ovmf.length);
    expect(hex(new SnpLaunchDigest().updateNormal(gpa, ovmf).digest())).toBe(kat.expected_hex);
  });
});

describe('PAGE_INFO', () => {
  it('lays out DIGEST_CUR, CONTENTS, LENGTH 0x70, PAGE_TYPE, IMI, VMPL3/2/1 perms, GPA', () => {
    const info = encodePageInfo({
      digestCur: new Uint8Array(48).fill(0xaa),
      contents: new Uint8Array(48).fill(0xbb),
      pageType: 'SECRETS',
      gpa: 0x80_1000n,
      imi: true,
      vmpl3Perms: 3,
      vmpl2Perms: 2,
      vmpl1Perms: 1,
    });
    expect(info).toHaveLength(SNP_PAGE_INFO_SIZE);
    expect(hex(info.subarray(0x60))).toBe('7000' + '05' + '01' + '030201' + '00' + '0010800000000000');
  });

  it('checks sizes and alignment', () => {
    const z = new Uint8Array(48);
    expect(() => encodePageInfo({ digestCur: z, contents: z, pageType: 'NORMAL', gpa: 0x123n })).toThrow(
      SnpInvalidFieldError,
    );
    expect(() =>
      encodePageInfo({ digestCur: z.subarray(1), contents: z, pageType: 'NORMAL', gpa: 0n }),
    ).toThrow(SnpTruncatedInputError);
    expect(() =>
      encodePageInfo({ digestCur: z, contents: z, pageType: 'NORMAL', gpa: 0n, vmpl1Perms: 256 }),
    ).toThrow(SnpInvalidFieldError);
    expect(() => new SnpLaunchDigest().updateNormal(0n, new Uint8Array(100))).toThrow(SnpInvalidFieldError);
    expect(() => new SnpLaunchDigest().updateVmsa(new Uint8Array(100))).toThrow(SnpTruncatedInputError);
    expect(() => new SnpLaunchDigest(new Uint8Array(47))).toThrow(SnpTruncatedInputError);
  });
});

describe('other page types', () => {
  const pageInfo = (ld: Uint8Array, contents: Uint8Array, type: number, gpa: bigint) => {
    const b = new Uint8Array(0x70);
    b.set(ld, 0);
    b.set(contents, 0x30);
    b[0x60] = 0x70;
    b[0x62] = type;
    new DataView(b.buffer).setBigUint64(0x68, gpa, true);
    return sha384(b);
  };

  it('hashes zero CONTENTS for ZERO/UNMEASURED/SECRETS/CPUID and SHA-384(VMSA) at the fixed VMSA GPA', () => {
    const vmsa = new Uint8Array(SNP_PAGE_SIZE).fill(7);
    let ld = new Uint8Array(48);
    ld = pageInfo(ld, new Uint8Array(48), 3, 0x80_0000n);
    ld = pageInfo(ld, new Uint8Array(48), 3, 0x80_1000n);
    ld = pageInfo(ld, new Uint8Array(48), 5, 0x80_2000n);
    ld = pageInfo(ld, new Uint8Array(48), 6, 0x80_3000n);
    ld = pageInfo(ld, new Uint8Array(48), 4, 0x80_4000n);
    ld = pageInfo(ld, sha384(vmsa), 2, 0xffff_ffff_f000n);
    const digest = new SnpLaunchDigest()
      .updateUnmeasured('ZERO', 0x80_0000n, 2)
      .updateUnmeasured('SECRETS', 0x80_2000n)
      .updateUnmeasured('CPUID', 0x80_3000n)
      .updateUnmeasured('UNMEASURED', 0x80_4000n)
      .updateVmsa(vmsa)
      .digest();
    expect(hex(digest)).toBe(hex(ld));
    expect(SNP_VMSA_GPA).toBe(0xffff_ffff_f000n);
  });

  it('continues from a given digest', () => {
    const page = new Uint8Array(SNP_PAGE_SIZE).fill(1);
    const both = new SnpLaunchDigest().updateNormal(0n, page).updateNormal(0x1000n, page).digest();
    const first = new SnpLaunchDigest().updateNormal(0n, page).digest();
    expect(hex(new SnpLaunchDigest(first).updateNormal(0x1000n, page).digest())).toBe(hex(both));
  });
});
