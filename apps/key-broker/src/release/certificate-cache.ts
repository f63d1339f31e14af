import { createHash } from 'node:crypto';
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
  kdsCekUrl,
  kdsVcekUrl,
  parseAttestationReport,
  readVekInfo,
  requireSevUsage,
  SevUsage,
} from '@ccm/sev';
import { type DataSource } from 'typeorm';
import { type z } from 'zod';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';

const t = `"${KEY_BROKER_SCHEMA}".certificate_cache`;

interface Row {
  kds_url: string;
  kind: 'vcek' | 'cek';
  product_line: string | null;
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
  addedBy: r.added_by,
  addedAt: new Date(r.added_at).toISOString(),
});

/**
 * The certificate cache the guest owner fills (issue 10 item 2): VCEKs and CEKs it fetched from AMD's
 * KDS, filed under their KDS URL. The release verifies an SNP guest's report with the cached VCEK of its
 * chip and REPORTED_TCB when there is one (the guest's own is then not used).
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
    const { kdsUrl, productLine, bytes } = req.kind === 'vcek' ? this.vcek(req.der) : this.cek(req);
    const [row] = await ctx.manager!.query<Row[]>(
      `INSERT INTO ${t} (kds_url, kind, product_line, certificate, sha256, added_by) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (kds_url) DO UPDATE SET certificate = EXCLUDED.certificate, sha256 = EXCLUDED.sha256,
         added_by = EXCLUDED.added_by, added_at = now()
       RETURNING *`,
      [
        kdsUrl,
        req.kind,
        productLine ?? null,
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

  /** The cached VCEK (DER, base64) of the chip and REPORTED_TCB of an SNP report, if the owner put one. */
  async vcekFor(reportBase64: string): Promise<string | undefined> {
    let url: string;
    try {
      const report = parseAttestationReport(Buffer.from(reportBase64, 'base64'));
      if (!report.generation) return undefined;
      url = kdsVcekUrl(report.generation, report.chipId, report.reportedTcb);
    } catch {
      return undefined; // the judge refuses the report itself, naming why
    }
    const [row] = await this.ds.query<Array<{ certificate: string }>>(
      `SELECT certificate FROM ${t} WHERE kds_url = $1 AND kind = 'vcek'`,
      [url],
    );
    return row?.certificate;
  }

  private vcek(der: string): { kdsUrl: string; productLine: ProductLine; bytes: Buffer } {
    const bytes = Buffer.from(der, 'base64');
    let info: ReturnType<typeof readVekInfo>;
    try {
      info = readVekInfo(bytes);
    } catch (err) {
      throw rejected('not-a-vcek', `the certificate is not a VCEK: ${(err as Error).message}`);
    }
    if (info.kind !== 'VCEK' || !info.hwId) {
      throw rejected(
        'not-a-vcek',
        `the certificate is a ${info.kind}, not a VCEK (VLEKs are not cached yet)`,
      );
    }
    try {
      const kdsUrl = kdsVcekUrl(info.generation, info.hwId, info.tcb);
      return { kdsUrl, productLine: info.generation.toLowerCase() as ProductLine, bytes };
    } catch (err) {
      throw rejected('no-kds-url', (err as Error).message);
    }
  }

  private cek(req: { chipId: string; certificate: string }): {
    kdsUrl: string;
    productLine?: undefined;
    bytes: Buffer;
  } {
    const bytes = Buffer.from(req.certificate, 'base64');
    try {
      requireSevUsage(decodeSevCertificate(bytes), SevUsage.CEK, 'CEK');
    } catch (err) {
      throw rejected('not-a-cek', `the certificate is not a SEV CEK: ${(err as Error).message}`);
    }
    return { kdsUrl: kdsCekUrl(Buffer.from(req.chipId, 'hex')), bytes };
  }
}
