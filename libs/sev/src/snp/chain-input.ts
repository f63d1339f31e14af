import { bytesEqual } from './bytes.js';
import type { SnpCertTableEntry } from './cert-table.js';
import type { SnpCertChain } from './chain.js';
import { SnpCertificateError } from './errors.js';
import {
  type CertificateFields,
  certificateFields,
  parsePemBundle,
  type SnpCertificateInput,
} from './x509.js';

/**
 * Builds an {@link SnpCertChain} from a VCEK/VLEK and the CA certificates that came with it, in any
 * order: a KDS `cert_chain` PEM (ASK or ASVK, then ARK), a bundle holding ASK, ARK and ASVK, or a list.
 * The intermediate is the CA whose subject issued the VCEK/VLEK; the ARK is the self-issued CA that
 * issued it. Nothing is verified here (see {@link verifySnpCertChain}).
 */
export function assembleSnpCertChain(
  vek: SnpCertificateInput,
  cas: string | readonly SnpCertificateInput[],
): SnpCertChain {
  const list = typeof cas === 'string' ? parsePemBundle(cas) : cas;
  const vekFields = certificateFields(vek, 'VCEK/VLEK');
  const caFields: CertificateFields[] = list.map((c, i) => certificateFields(c, `CA certificate ${i}`));
  const issuedBy = (child: CertificateFields) => (ca: CertificateFields) =>
    bytesEqual(child.issuerDer, ca.subjectDer);
  const ask = caFields.find(issuedBy(vekFields));
  if (!ask)
    throw new SnpCertificateError(`no CA certificate named "${vekFields.issuerCommonName ?? '?'}" was given`);
  const ark = caFields.find((ca) => issuedBy(ask)(ca) && bytesEqual(ca.issuerDer, ca.subjectDer));
  if (!ark)
    throw new SnpCertificateError(`no self-issued root named "${ask.issuerCommonName ?? '?'}" was given`);
  return { ark: ark.x509, ask: ask.x509, vek: vekFields.x509 };
}

/**
 * Builds an {@link SnpCertChain} from an extended report's certificate table (ARK, ASK — which holds the
 * ASVK for VLEK-signed reports — and VCEK or VLEK entries).
 */
export function snpCertChainFromTable(entries: readonly SnpCertTableEntry[]): SnpCertChain {
  const vek = entries.find((e) => e.kind === 'VCEK') ?? entries.find((e) => e.kind === 'VLEK');
  if (!vek) throw new SnpCertificateError('certificate table has no VCEK or VLEK entry');
  const cas = entries.filter((e) => e.kind === 'ARK' || e.kind === 'ASK').map((e) => e.data);
  return assembleSnpCertChain(vek.data, cas);
}
