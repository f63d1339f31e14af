import type { KeyObject, X509Certificate } from 'node:crypto';
import { AMD_VEK_OID, snpProductName, type SnpGeneration, type TcbVersion } from '@ccm/sev';
import { ia5String, integer } from '../x509/der.js';
import { issueCertificate, type X509Extension, type X509Name } from '../x509/certificate.js';
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
  return issueCertificate(
    {
      serial: 0n,
      issuer: labName(input.names, 'ASK'),
      subject: { organization: LAB_ORGANIZATION, commonName: 'SEV-VCEK' },
      ...validity(VCEK_YEARS),
      subjectPublicKey: input.publicKey,
      extensions: [
        ...vekExtensions(VCEK_PRODUCT_NAME[generation], generation, input.tcb),
        { oid: AMD_VEK_OID.hwId, value: Uint8Array.from(input.hwId.subarray(0, hwIdBytes)) },
      ],
    },
    input.issuerKey,
  );
}

/** Inputs of {@link issueVlekCertificate}. */
export interface IssueVlekInput {
  readonly names: LabNames;
  /** The lab ASVK's subject (the VLEK's issuer) and private key. */
  readonly issuer: X509Name;
  readonly issuerKey: KeyObject;
  /** The VLEK's public key (EC P-384): the key the cloud provider loads into its platforms. */
  readonly publicKey: KeyObject;
  /** The TCB the VLEK was issued for (reports signed with it carry it as REPORTED_TCB). */
  readonly tcb: TcbVersion;
  /** The cloud provider (cspID), e.g. `CN=cloud.example`. */
  readonly cspId: string;
}

/** VLEK validity in years (AMD's sample is valid one year). */
const VLEK_YEARS = 1;

/**
 * A VLEK certificate as AMD 57230 describes it: subject CN `SEV-VLEK`, EC P-384 key, RSASSA-PSS by the
 * ASVK (`SEV-VLEK-<Product>`), productName the bare product line, the SPLs, and cspID instead of hwID.
 */
export function issueVlekCertificate(input: IssueVlekInput): X509Certificate {
  const { generation } = input.names;
  return issueCertificate(
    {
      serial: 0n,
      issuer: input.issuer,
      subject: { organization: LAB_ORGANIZATION, commonName: 'SEV-VLEK' },
      ...validity(VLEK_YEARS),
      subjectPublicKey: input.publicKey,
      extensions: [
        ...vekExtensions(snpProductName(generation), generation, input.tcb),
        { oid: AMD_VEK_OID.cspId, value: ia5String(input.cspId) },
      ],
    },
    input.issuerKey,
  );
}

/** The AMD extensions a VCEK and a VLEK share: structVersion, productName and the SPLs of `tcb`. */
function vekExtensions(productName: string, generation: SnpGeneration, tcb: TcbVersion): X509Extension[] {
  const spl = (oid: string, value: number): X509Extension => ({ oid, value: integer(value) });
  return [
    { oid: AMD_VEK_OID.structVersion, value: integer(1) },
    { oid: AMD_VEK_OID.productName, value: ia5String(productName) },
    spl(AMD_VEK_OID.blSpl, tcb.bootLoader),
    spl(AMD_VEK_OID.teeSpl, tcb.tee),
    spl(AMD_VEK_OID.snpSpl, tcb.snp),
    ...RESERVED_SPL_OIDS.map((oid) => spl(oid, 0)),
    spl(AMD_VEK_OID.ucodeSpl, tcb.microcode),
    ...(generation === 'turin' ? [spl(AMD_VEK_OID.fmcSpl, tcb.fmc ?? 0)] : []),
  ];
}
