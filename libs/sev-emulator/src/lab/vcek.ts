import type { KeyObject, X509Certificate } from 'node:crypto';
import { AMD_VEK_OID, type SnpGeneration, type TcbVersion } from '@ccm/sev';
import { ia5String, integer } from '../x509/der.js';
import { issueCertificate, type X509Extension } from '../x509/certificate.js';
import { LAB_ORGANIZATION, labName, type LabNames, validity } from './lab-certs.js';

/** productName AMD writes into VCEKs per product line (spec 9.4). */
export const VCEK_PRODUCT_NAME: Readonly<Record<SnpGeneration, string>> = {
  milan: 'Milan-B0',
  genoa: 'Genoa',
  turin: 'Turin',
};

/** hwID length in a VCEK: the whole 64-byte CHIP_ID before Turin, its first 8 bytes on Turin. */
export const VCEK_HWID_BYTES: Readonly<Record<SnpGeneration, number>> = { milan: 64, genoa: 64, turin: 8 };

/** AMD's reserved SPL extensions `.3.4`–`.3.7`, present (as 0) in real VCEKs. */
const RESERVED_SPL_OIDS = ['4', '5', '6', '7'].map((n) => `1.3.6.1.4.1.3704.1.3.${n}`);

/** VCEK validity in years, as AMD's KDS issues them. */
const VCEK_YEARS = 7;

/** Inputs of {@link issueVcekCertificate}. */
export interface IssueVcekInput {
  readonly names: LabNames;
  /** The lab ASK's private key. */
  readonly issuerKey: KeyObject;
  /** The chip's VCEK public key (EC P-384). */
  readonly publicKey: KeyObject;
  /** CHIP_ID (64 bytes); the certificate carries its first 8 bytes on Turin. */
  readonly hwId: Uint8Array;
  /** The TCB the VCEK was derived for (becomes the SPL extensions; reports carry it as REPORTED_TCB). */
  readonly tcb: TcbVersion;
}

/**
 * A VCEK certificate as AMD 57230 describes it: subject CN `SEV-VCEK`, EC P-384 key, RSASSA-PSS by the
 * ASK, AMD extensions structVersion, productName, blSPL/teeSPL/snpSPL/ucodeSPL (+ fmcSPL on Turin) as
 * DER INTEGERs, and hwID with the raw chip id octets.
 */
export function issueVcekCertificate(input: IssueVcekInput): X509Certificate {
  const { generation } = input.names;
  const hwIdBytes = VCEK_HWID_BYTES[generation];
  if (input.hwId.length < hwIdBytes) throw new RangeError(`hwId needs ${hwIdBytes} bytes`);
  const spl = (oid: string, value: number): X509Extension => ({ oid, value: integer(value) });
  const tcb = input.tcb;
  const extensions: X509Extension[] = [
    { oid: AMD_VEK_OID.structVersion, value: integer(1) },
    { oid: AMD_VEK_OID.productName, value: ia5String(VCEK_PRODUCT_NAME[generation]) },
    spl(AMD_VEK_OID.blSpl, tcb.bootLoader),
    spl(AMD_VEK_OID.teeSpl, tcb.tee),
    spl(AMD_VEK_OID.snpSpl, tcb.snp),
    ...RESERVED_SPL_OIDS.map((oid) => spl(oid, 0)),
    spl(AMD_VEK_OID.ucodeSpl, tcb.microcode),
    ...(generation === 'turin' ? [spl(AMD_VEK_OID.fmcSpl, tcb.fmc ?? 0)] : []),
    { oid: AMD_VEK_OID.hwId, value: Uint8Array.from(input.hwId.subarray(0, hwIdBytes)) },
  ];
  return issueCertificate(
    {
      serial: 0n,
      issuer: labName(input.names, 'ASK'),
      subject: { organization: LAB_ORGANIZATION, commonName: 'SEV-VCEK' },
      ...validity(VCEK_YEARS),
      subjectPublicKey: input.publicKey,
      extensions,
    },
    input.issuerKey,
  );
}
