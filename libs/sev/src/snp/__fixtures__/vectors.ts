import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findVectorsDir } from '../../__fixtures__/vectors-dir.js';

/**
 * Test access to the shared real-data vectors (../shared/vectors next to the repository root). Test-only:
 * the library itself does no I/O. Lives under __fixtures__ so the build skips it.
 */

/** Absolute path of shared/vectors. */
export const VECTORS_DIR = findVectorsDir(import.meta.dirname);

/** Bytes of a vector file (path relative to shared/vectors). */
export function vectorBytes(path: string): Uint8Array {
  return new Uint8Array(readFileSync(join(VECTORS_DIR, path)));
}

/** Text of a vector file. */
export function vectorText(path: string): string {
  return readFileSync(join(VECTORS_DIR, path), 'utf8');
}

/** Parsed JSON of a vector file. */
export function vectorJson<T>(path: string): T {
  return JSON.parse(vectorText(path)) as T;
}

/** The real SNP reports with the certificate that signed each and the CA bundle of its chain. */
export const SNP_REPORT_VECTORS = [
  {
    name: 'virtee-milan-vcek',
    report: 'snp/reports/virtee-milan-vcek/report_milan.bin',
    vek: 'snp/reports/virtee-milan-vcek/vcek_milan.der',
    cas: 'snp/reports/virtee-milan-vcek/cert_chain_milan.pem',
    kind: 'VCEK',
    version: 2,
  },
  {
    name: 'gosevguest-milan-vcek',
    report: 'snp/reports/gosevguest-milan-vcek/attestation.bin',
    vek: 'snp/reports/gosevguest-milan-vcek/vcek.der',
    cas: 'snp/amd-ca/milan/ask_ark_asvk.pem',
    kind: 'VCEK',
    version: 2,
  },
  {
    name: 'trustee-milan-vlek',
    report: 'snp/reports/trustee-milan-vlek/report.bin',
    vek: 'snp/reports/trustee-milan-vlek/vlek.der',
    cas: 'snp/amd-ca/milan/asvk_ark_kds_vlek_chain.pem',
    kind: 'VLEK',
    version: 3,
  },
] as const;

/** A fixed instant at which every vector certificate is valid (the VLEK expired 2025-12-10). */
export const VECTOR_TIME = new Date('2025-06-01T00:00:00Z');

/** A copy of `bytes` with bit `bit` of byte `offset` flipped. */
export function flipBit(bytes: Uint8Array, offset: number, bit = 0): Uint8Array {
  if (offset < 0 || offset >= bytes.length)
    throw new RangeError(`offset ${offset} outside ${bytes.length} bytes`);
  const out = Uint8Array.from(bytes);
  out[offset] ^= 1 << bit;
  return out;
}

/** Lowercase hex. */
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
