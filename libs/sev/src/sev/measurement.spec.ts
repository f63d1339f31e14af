import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hex, readSevKats, readVector } from './__fixtures__/vectors.js';
import {
  SevBadMeasurementError,
  SevFirmwareImageError,
  SevInvalidLengthError,
  SevInvalidStateError,
  SevTruncatedError,
} from './errors.js';
import { buildSevKernelHashesTable } from './hashes-table.js';
import {
  assertSevLaunchMeasurement,
  computeSevLaunchDigest,
  computeSevLaunchMeasure,
  decodeSevMeasurementBlob,
  encodeSevMeasurementBlob,
  SevLaunchDigest,
  sevEsVmsaPages,
  verifySevLaunchMeasurement,
  type SevLaunchImage,
} from './measurement.js';
import { sevHmacSha256 } from './transport-crypto.js';

const kats = readSevKats();
const opt = (path: string | undefined) => (path ? readVector(path) : undefined);

function imageOf(k: (typeof kats.launch_measure)[number]): SevLaunchImage | undefined {
  if (!k.firmware_file) return undefined;
  const kernel = k.kernel_file
    ? { kernel: readVector(k.kernel_file), initrd: opt(k.initrd_file), cmdline: k.cmdline }
    : undefined;
  const vmsas =
    k.vmsa_bsp_file && k.vmsa_ap_file && k.vcpus
      ? sevEsVmsaPages(readVector(k.vmsa_bsp_file), readVector(k.vmsa_ap_file), k.vcpus)
      : undefined;
  return { firmware: readVector(k.firmware_file), kernel, vmsas };
}

describe('launch measurement (SEV / SEV-ES)', () => {
  it.each(kats.launch_measure)('KAT $name', (k) => {
    const tik = k.tik_hex ? hex(k.tik_hex) : readVector(k.tik_file!);
    const image = imageOf(k);
    const digest = image ? computeSevLaunchDigest(image) : hex(k.ld_digest_hex!);
    if (k.ld_digest_hex) expect(digest.toString('hex')).toBe(k.ld_digest_hex);
    const expectedBlob = k.expected_launch_measure_blob_48_hex
      ? hex(k.expected_launch_measure_blob_48_hex)
      : undefined;
    const mnonce = k.mnonce_hex ? hex(k.mnonce_hex) : decodeSevMeasurementBlob(expectedBlob!).mnonce;
    const platform = { apiMajor: k.api_major, apiMinor: k.api_minor, build: k.build };
    const measure = computeSevLaunchMeasure({ ...platform, tik, policy: k.policy_u32, digest, mnonce });
    if (k.expected_measure_hex) expect(measure.toString('hex')).toBe(k.expected_measure_hex);
    const blob = encodeSevMeasurementBlob({ measure, mnonce });
    if (expectedBlob) expect(blob.toString('hex')).toBe(expectedBlob.toString('hex'));
    expect(verifySevLaunchMeasurement(blob, { ...platform, tik, policy: k.policy_u32, digest }).ok).toBe(
      true,
    );
  });

  it('KAT hashes table (sevctl fake kernel / initrd / cmdline)', () => {
    const k = kats.launch_measure.find((m) => m.helper_derived_hashes_table_176_bytes_hex)!;
    const table = buildSevKernelHashesTable({
      kernel: readVector(k.kernel_file!),
      initrd: readVector(k.initrd_file!),
      cmdline: k.cmdline,
    });
    expect(table.toString('hex')).toBe(k.helper_derived_hashes_table_176_bytes_hex);
  });

  const sevComponents = kats.launch_digest_components.filter((c) => c.name.startsWith('sev-'));
  const componentInputs: Record<string, Omit<SevLaunchImage, 'firmware'>> = {
    'sev-digest-ovmfx64-no-kernel': {},
    'sev-digest-amdsev-empty-kernel-with-cmdline': {
      kernel: { kernel: Buffer.alloc(0), initrd: Buffer.alloc(0), cmdline: 'console=ttyS0 loglevel=7' },
    },
    'sev-digest-amdsev-empty-kernel-no-initrd-no-append': { kernel: { kernel: Buffer.alloc(0) } },
  };
  it.each(sevComponents)('KAT $name', (c) => {
    const inputs = componentInputs[c.name];
    expect(inputs).toBeDefined();
    const digest = computeSevLaunchDigest({ firmware: readVector(c.ovmf_file), ...inputs });
    expect(digest.toString('hex')).toBe(c.expected_hex);
  });

  it('refuses -kernel measurement with an OVMF whose hashes-table area is empty (OvmfX64)', () => {
    const firmware = readVector('sev/kat/virtee-ovmf/ovmf_OvmfX64_suffix.bin');
    expect(() => computeSevLaunchDigest({ firmware, kernel: { kernel: Buffer.alloc(0) } })).toThrow(
      SevFirmwareImageError,
    );
    expect(() =>
      computeSevLaunchDigest({ firmware: Buffer.alloc(4096), kernel: { kernel: Buffer.alloc(0) } }),
    ).toThrow(SevFirmwareImageError);
  });

  it('streaming digest equals SHA-256 of the concatenation; order is enforced', () => {
    const ld = new SevLaunchDigest().updateData(Buffer.from('ab')).updateData(Buffer.from('c'));
    ld.updateVmsa(Buffer.alloc(4096, 1));
    expect(() => ld.updateData(Buffer.from('d'))).toThrow(SevInvalidStateError);
    expect(() => ld.updateVmsa(Buffer.alloc(4095))).toThrow(SevTruncatedError);
    const want = createHash('sha256').update('abc').update(Buffer.alloc(4096, 1)).digest();
    expect(ld.digest().equals(want)).toBe(true);
    expect(ld.vmsaCount).toBe(1);
    expect(() => ld.updateVmsa(Buffer.alloc(4096))).toThrow(SevInvalidStateError);
    expect(() => sevEsVmsaPages(Buffer.alloc(4096), Buffer.alloc(4096), 0)).toThrow(SevInvalidStateError);
  });

  it('API < 0.17 measure omits the context/version prefix', () => {
    const base = {
      tik: Buffer.alloc(16, 1),
      policy: 1,
      digest: Buffer.alloc(32, 2),
      mnonce: Buffer.alloc(16, 3),
      build: 5,
    };
    const legacy = computeSevLaunchMeasure({ ...base, apiMajor: 0, apiMinor: 16 });
    const modern = computeSevLaunchMeasure({ ...base, apiMajor: 0, apiMinor: 17 });
    const policy = Buffer.from([1, 0, 0, 0]);
    expect(legacy.equals(sevHmacSha256(base.tik, policy, base.digest, base.mnonce))).toBe(true);
    const prefix = Buffer.of(0x04, 0, 17, 5);
    expect(modern.equals(sevHmacSha256(base.tik, prefix, policy, base.digest, base.mnonce))).toBe(true);
    expect(legacy.equals(modern)).toBe(false);
  });

  it('a wrong digest, policy, TIK or a flipped blob bit fails; blob lengths are checked', () => {
    const k = kats.launch_measure[0];
    const input = {
      tik: hex(k.tik_hex!),
      apiMajor: k.api_major,
      apiMinor: k.api_minor,
      build: k.build,
      policy: k.policy_u32,
      digest: hex(k.ld_digest_hex!),
    };
    const blob = encodeSevMeasurementBlob({
      measure: hex(k.expected_measure_hex!),
      mnonce: hex(k.mnonce_hex!),
    });
    expect(assertSevLaunchMeasurement(blob, input).mnonce).toEqual(Uint8Array.from(hex(k.mnonce_hex!)));
    expect(verifySevLaunchMeasurement(blob, { ...input, policy: 1 }).ok).toBe(false);
    expect(verifySevLaunchMeasurement(blob, { ...input, digest: Buffer.alloc(32) }).ok).toBe(false);
    expect(verifySevLaunchMeasurement(blob, { ...input, build: 16 }).ok).toBe(false);
    const flipped = Buffer.from(blob);
    flipped[40] ^= 0x80;
    expect(() => assertSevLaunchMeasurement(flipped, input)).toThrow(SevBadMeasurementError);
    expect(() => decodeSevMeasurementBlob(blob.subarray(0, 47))).toThrow(SevTruncatedError);
    expect(() => decodeSevMeasurementBlob(Buffer.concat([blob, Buffer.alloc(1)]))).toThrow(
      SevInvalidLengthError,
    );
  });
});
