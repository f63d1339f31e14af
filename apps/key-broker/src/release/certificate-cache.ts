import { createHash, X509Certificate } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  CcmError,
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  ListCertificatesRequestSchema,
  PutCertificateRequestSchema,
  type CachedCertificate,
  type ProductLine,
} from '@ccm/contracts';
import { OnRequest, type MessageContext } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import {
  decodeSevCertificate,
  isReportSignatureValid,
  kdsCekUrl,
  kdsVcekUrl,
  kdsVlekUrl,
  parseAttestationReport,
  readVekInfo,
  requireSevUsage,
  SevUsage,
} from '@ccm/sev';
import { type DataSource } from 'typeorm';
import { type z } from 'zod';
import { type CachedCek } from '../attest/platform-verdict.js';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';

const t = `"${KEY_BROKER_SCHEMA}".certificate_cache`;

interface Row {
  kds_url: string;
  kind: CachedCertificate['kind'];
  product_line: string | null;
  csp_id: string | null;
  certificate: string;
  sha256: string;
  added_by: string;
  added_at: Date;
}

const rejected = (reason: string, message: string) =>
  new CcmError(KeyBrokerErrorCodes.CertificateRejected, message, {
    retryable: false,
    details: { reason },
  });

const toReply = (r: Row): CachedCertificate => ({
  kind: r.kind,
  kdsUrl: r.kds_url,
  sha256: r.sha256,
  ...(r.product_line ? { productLine: r.product_line as ProductLine } : {}),
  ...(r.csp_id ? { cspId: r.csp_id } : {}),
  addedBy: r.added_by,
  addedAt: new Date(r.added_at).toISOString(),
});

/** What a put files: where, which product line and cloud provider, the bytes. */
interface Filed {
  kdsUrl: string;
  productLine?: ProductLine;
  cspId?: string;
  bytes: Buffer;
}

/**
 * The certificate cache the guest owner fills (issue 10 item 2): VCEKs, VLEKs and CEKs it fetched from
 * AMD's KDS (a VLEK from its cloud provider), filed under their KDS URL. The release verifies an SNP
 * guest's report with the cached VCEK of its chip and REPORTED_TCB, or for a VLEK-signed report the
 * cached VLEK of its product line and REPORTED_TCB that verifies it, when there is one (the guest's own
 * is then not used).
 */
@Injectable()
export class CertificateCache {
  constructor(@Inject(DATA_SOURCE) private readonly ds: DataSource) {}

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.putCertificate),
    schema: PutCertificateRequestSchema,
    idempotent: true,
    allow: [GUEST_OWNER],
  })
  async put(
    req: z.infer<typeof PutCertificateRequestSchema>,
    ctx: MessageContext,
  ): Promise<CachedCertificate> {
    const { kdsUrl, productLine, cspId, bytes } = req.kind === 'cek' ? this.cek(req) : this.vek(req);
    const [row] = await ctx.manager!.query<Row[]>(
      `INSERT INTO ${t} (kds_url, kind, product_line, csp_id, certificate, sha256, added_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (kds_url) DO UPDATE SET certificate = EXCLUDED.certificate, sha256 = EXCLUDED.sha256,
         added_by = EXCLUDED.added_by, added_at = now()
       RETURNING *`,
      [
        kdsUrl,
        req.kind,
        productLine ?? null,
        cspId ?? null,
        bytes.toString('base64'),
        createHash('sha256').update(bytes).digest('hex'),
        ctx.envelope.source,
      ],
    );
    return toReply(row);
  }

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.listCertificates),
    schema: ListCertificatesRequestSchema,
    allow: [GUEST_OWNER],
  })
  async list(
    req: z.infer<typeof ListCertificatesRequestSchema>,
  ): Promise<{ certificates: CachedCertificate[] }> {
    const rows = await this.ds.query<Row[]>(
      `SELECT * FROM ${t} WHERE $1::text IS NULL OR kind = $1 ORDER BY kind, kds_url`,
      [req.kind ?? null],
    );
    return { certificates: rows.map(toReply) };
  }

  /** Every CEK the owner cached, decoded (platform attestation verifies a host's chain with them). */
  async ceks(): Promise<CachedCek[]> {
    const rows = await this.ds.query<Array<{ kds_url: string; certificate: string }>>(
      `SELECT kds_url, certificate FROM ${t} WHERE kind = 'cek' ORDER BY kds_url`,
    );
    return rows.map((r) => ({
      kdsUrl: r.kds_url,
      cek: decodeSevCertificate(Buffer.from(r.certificate, 'base64')),
    }));
  }

  /**
   * The cached endorsement key (DER, base64) for an SNP report, if the owner put one: the VCEK of its
   * chip and REPORTED_TCB, or for a VLEK-signed report (CHIP_ID zero) a VLEK of its product line and
   * REPORTED_TCB whose key verifies the report's signature.
   */
  async vekFor(reportBase64: string): Promise<string | undefined> {
    const bytes = Buffer.from(reportBase64, 'base64');
    let url: string;
    let vlek = false;
    try {
      const report = parseAttestationReport(bytes);
      if (!report.generation) return undefined;
      vlek = report.keyInfo.signingKey === 'VLEK';
      url = vlek
        ? kdsVlekUrl(report.generation, report.reportedTcb)
        : kdsVcekUrl(report.generation, report.chipId, report.reportedTcb);
    } catch {
      return undefined; // the judge refuses the report itself, naming why
    }
    if (!vlek) {
      const [row] = await this.ds.query<Array<{ certificate: string }>>(
        `SELECT certificate FROM ${t} WHERE kds_url = $1 AND kind = 'vcek'`,
        [url],
      );
      return row?.certificate;
    }
    const rows = await this.ds.query<Array<{ certificate: string }>>(
      `SELECT certificate FROM ${t} WHERE kind = 'vlek' AND left(kds_url, length($1)) = $1 ORDER BY kds_url`,
      [url],
    );
    return rows.find((r) => signs(bytes, r.certificate))?.certificate;
  }

  /** A VCEK or VLEK, as the request says, filed under its KDS URL. */
  private vek(req: { kind: 'vcek' | 'vlek'; der: string }): Filed {
    const bytes = Buffer.from(req.der, 'base64');
    const want = req.kind === 'vcek' ? 'VCEK' : 'VLEK';
    const reason = `not-a-${req.kind}`;
    let info: ReturnType<typeof readVekInfo>;
    try {
      info = readVekInfo(bytes);
    } catch (err) {
      throw rejected(reason, `the certificate is not a ${want}: ${(err as Error).message}`);
    }
    if (info.kind !== want) {
      throw rejected(
        reason,
        `the certificate is a ${info.kind}, not a ${want} (put it as kind ${info.kind.toLowerCase()})`,
      );
    }
    const productLine: ProductLine = info.generation;
    try {
      if (info.kind === 'VLEK') {
        const kdsUrl = kdsVlekUrl(info.generation, info.tcb, info.cspId ?? '');
        return { kdsUrl, productLine, bytes, ...(info.cspId ? { cspId: info.cspId } : {}) };
      }
      if (!info.hwId) throw new Error('the VCEK names no chip (hwID)');
      return { kdsUrl: kdsVcekUrl(info.generation, info.hwId, info.tcb), productLine, bytes };
    } catch (err) {
      throw rejected('no-kds-url', (err as Error).message);
    }
  }

  private cek(req: { chipId: string; certificate: string }): Filed {
    const bytes = Buffer.from(req.certificate, 'base64');
    try {
      requireSevUsage(decodeSevCertificate(bytes), SevUsage.CEK, 'CEK');
    } catch (err) {
      throw rejected('not-a-cek', `the certificate is not a SEV CEK: ${(err as Error).message}`);
    }
    return { kdsUrl: kdsCekUrl(Buffer.from(req.chipId, 'hex')), bytes };
  }
}

/** Whether the endorsement key certificate (DER, base64) verifies the report's signature. */
function signs(report: Buffer, der: string): boolean {
  try {
    return isReportSignatureValid(report, new X509Certificate(Buffer.from(der, 'base64')));
  } catch {
    return false;
  }
}
