import { contentOf, DER_TAG, decodeSmallUint, expectNode } from './der.js';
import { SnpCertificateError } from './errors.js';
import { generationFromProductName, type SnpGeneration, tcbLayoutOf } from './generation.js';
import type { TcbVersion } from './tcb.js';
import { certificateFields, type CertificateFields, type SnpCertificateInput } from './x509.js';

/** AMD's extension OIDs in VCEK/VLEK certificates (AMD 57230; spec 9.4). */
export const AMD_VEK_OID = {
  structVersion: '1.3.6.1.4.1.3704.1.1',
  productName: '1.3.6.1.4.1.3704.1.2',
  blSpl: '1.3.6.1.4.1.3704.1.3.1',
  teeSpl: '1.3.6.1.4.1.3704.1.3.2',
  snpSpl: '1.3.6.1.4.1.3704.1.3.3',
  ucodeSpl: '1.3.6.1.4.1.3704.1.3.8',
  fmcSpl: '1.3.6.1.4.1.3704.1.3.9',
  hwId: '1.3.6.1.4.1.3704.1.4',
  cspId: '1.3.6.1.4.1.3704.1.5',
} as const;

/** Subject common names of the two endorsement-key certificate kinds. */
export const VEK_SUBJECT_CN = { VCEK: 'SEV-VCEK', VLEK: 'SEV-VLEK' } as const;

/** Which endorsement key a certificate holds: chip-unique VCEK or cloud-provider-loaded VLEK. */
export type SnpVekKind = keyof typeof VEK_SUBJECT_CN;

/** Size of hwID in a VCEK: the full 64-byte CHIP_ID before Turin, its first 8 bytes from Turin on. */
export const VCEK_HWID_SIZE: Readonly<Record<SnpGeneration, number>> = { milan: 64, genoa: 64, turin: 8 };

/** What a VCEK/VLEK certificate says about the chip and firmware it endorses. */
export interface SnpVekInfo {
  readonly kind: SnpVekKind;
  readonly productName: string;
  readonly generation: SnpGeneration;
  readonly structVersion: number | undefined;
  /** The TCB the key was derived for (bl/tee/snp/ucode SPLs, plus fmc on Turin). */
  readonly tcb: TcbVersion;
  /** CHIP_ID (VCEK only). */
  readonly hwId: Uint8Array | undefined;
  /** Cloud provider identity, e.g. `CN=cc-us-east-2.amazonaws.com` (VLEK only). */
  readonly cspId: string | undefined;
}

function requiredExtension(f: CertificateFields, oid: string, name: string): Uint8Array {
  const ext = f.extensions.get(oid);
  if (!ext) throw new SnpCertificateError(`VCEK/VLEK lacks the ${name} extension (${oid})`);
  return ext.value;
}

function derValue(octets: Uint8Array, tag: number, name: string): Uint8Array {
  const node = expectNode(octets, 0, tag, name);
  if (node.end !== octets.length)
    throw new SnpCertificateError(`${name}: trailing bytes after the DER value`);
  return contentOf(octets, node);
}

function splValue(f: CertificateFields, oid: string, name: string): number {
  const value = decodeSmallUint(derValue(requiredExtension(f, oid, name), DER_TAG.INTEGER, name), name);
  if (value > 0xff) throw new SnpCertificateError(`${name} = ${value} does not fit an SPL byte`);
  return value;
}

function ia5(octets: Uint8Array, name: string): string {
  return Buffer.from(derValue(octets, DER_TAG.IA5_STRING, name)).toString('latin1');
}

function isCertificateFields(input: SnpCertificateInput | CertificateFields): input is CertificateFields {
  return typeof input === 'object' && 'extensions' in input && 'subjectDer' in input;
}

/** The kind of endorsement key from the subject CN, or undefined for any other certificate. */
export function vekKindOf(fields: CertificateFields): SnpVekKind | undefined {
  if (fields.subjectCommonName === VEK_SUBJECT_CN.VCEK) return 'VCEK';
  if (fields.subjectCommonName === VEK_SUBJECT_CN.VLEK) return 'VLEK';
  return undefined;
}

/**
 * Reads the AMD extensions of a VCEK or VLEK: product line, SPLs as a {@link TcbVersion} in that line's
 * layout, hwID, cspID. Throws {@link SnpCertificateError} for any other certificate or a missing SPL.
 */
export function readVekInfo(input: SnpCertificateInput | CertificateFields): SnpVekInfo {
  const f = isCertificateFields(input) ? input : certificateFields(input, 'VCEK/VLEK');
  const kind = vekKindOf(f);
  if (!kind)
    throw new SnpCertificateError(
      `subject CN "${f.subjectCommonName ?? ''}" is neither SEV-VCEK nor SEV-VLEK`,
    );
  const productName = ia5(requiredExtension(f, AMD_VEK_OID.productName, 'productName'), 'productName');
  let generation: SnpGeneration;
  try {
    generation = generationFromProductName(productName);
  } catch (cause) {
    throw new SnpCertificateError(`unknown productName "${productName}"`, { cause });
  }
  const layout = tcbLayoutOf(generation);
  const common = {
    bootLoader: splValue(f, AMD_VEK_OID.blSpl, 'blSPL'),
    tee: splValue(f, AMD_VEK_OID.teeSpl, 'teeSPL'),
    snp: splValue(f, AMD_VEK_OID.snpSpl, 'snpSPL'),
    microcode: splValue(f, AMD_VEK_OID.ucodeSpl, 'ucodeSPL'),
  };
  const tcb: TcbVersion =
    layout === 'turin'
      ? { layout, fmc: splValue(f, AMD_VEK_OID.fmcSpl, 'fmcSPL'), ...common }
      : { layout, ...common };
  const structExt = f.extensions.get(AMD_VEK_OID.structVersion);
  const hwIdExt = f.extensions.get(AMD_VEK_OID.hwId);
  const cspExt = f.extensions.get(AMD_VEK_OID.cspId);
  if (kind === 'VCEK' && !hwIdExt) throw new SnpCertificateError('VCEK lacks the hwID extension');
  return {
    kind,
    productName,
    generation,
    structVersion: structExt
      ? decodeSmallUint(derValue(structExt.value, DER_TAG.INTEGER, 'structVersion'), 'structVersion')
      : undefined,
    tcb,
    // hwID's extension octets are the raw chip id (no inner DER wrapper), as in every real VCEK.
    hwId: hwIdExt ? Uint8Array.from(hwIdExt.value) : undefined,
    cspId: cspExt ? ia5(cspExt.value, 'cspID') : undefined,
  };
}
