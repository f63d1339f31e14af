import { sign } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  RELEASE_LOG_GENESIS,
  releaseRecordHash,
  subjects,
  type ReleaseDecision,
  type ReleaseRecord,
} from '@ccm/contracts';
import { MESSAGING_OPTIONS, OutboxService, type MessagingOptions } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource, type EntityManager } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';

const t = `"${KEY_BROKER_SCHEMA}".release_log`;

/** The event of every release decision: `ccm.evt.key.<migrationId>.release-decided`. */
export const RELEASE_DECIDED = 'release-decided';

/**
 * The release log: every release decision, granted or refused, as a record signed with the
 * key-broker's identity key and chained to its predecessor by hash (libs/contracts `verifyReleaseLog`
 * checks it). Appends are serialized by one advisory lock; each append also writes the record as the
 * event `ccm.evt.key.<migrationId>.release-decided` (so `ccm audit replay` of the migration shows it;
 * an `admit-guest` decision's event is `ccm.evt.key.<admissionId>.release-decided`, about no migration).
 */
@Injectable()
export class ReleaseLog {
  constructor(
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    private readonly outbox: OutboxService,
  ) {}

  /** Appends a decision in the caller's transaction; its seq and time are given here. */
  async append(
    m: EntityManager,
    body: Omit<ReleaseDecision, 'seq' | 'decidedAt'>,
    causationId: string,
  ): Promise<ReleaseRecord> {
    await m.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [t]);
    const [last] = await m.query<Array<{ seq: number; hash: string }>>(
      `SELECT seq, hash FROM ${t} ORDER BY seq DESC LIMIT 1`,
    );
    const prevHash = last?.hash ?? RELEASE_LOG_GENESIS;
    // Through JSON once, so what is hashed is exactly what is stored and read back.
    const decision = JSON.parse(
      JSON.stringify({ ...body, seq: (last?.seq ?? 0) + 1, decidedAt: new Date().toISOString() }),
    ) as ReleaseDecision;
    const hash = releaseRecordHash(decision, prevHash);
    const record: ReleaseRecord = {
      decision,
      prevHash,
      hash,
      signerKey: this.opts.identity.keyId,
      signature: sign(null, Buffer.from(hash, 'hex'), this.opts.identity.signingKey).toString('base64'),
    };
    await m.query(`INSERT INTO ${t} (seq, migration_id, granted, record, hash) VALUES ($1, $2, $3, $4, $5)`, [
      decision.seq,
      decision.migrationId,
      decision.granted,
      JSON.stringify(record),
      hash,
    ]);
    await this.outbox.enqueue(m, subjects.evt('key', decision.migrationId, RELEASE_DECIDED), {
      type: 'key.release-decided',
      data: record,
      // An admission is about no migration: not chained to one, so `ccm audit` does not take it for one.
      ...(decision.kind === 'overlay-admission' ? {} : { correlationid: decision.migrationId }),
      causationid: causationId,
    });
    return record;
  }

  /** Records from `fromSeq` on, in order (of one migration when named). */
  async read(fromSeq: number, limit: number, migrationId?: string): Promise<ReleaseRecord[]> {
    const rows = await this.ds.query<Array<{ record: ReleaseRecord }>>(
      `SELECT record FROM ${t} WHERE seq >= $1 AND ($3::text IS NULL OR migration_id = $3)
       ORDER BY seq LIMIT $2`,
      [fromSeq, limit, migrationId ?? null],
    );
    return rows.map((r) => r.record);
  }
}
