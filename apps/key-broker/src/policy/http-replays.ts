import { Inject, Injectable } from '@nestjs/common';
import { CcmError, ErrorCodes } from '@ccm/contracts';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';

const t = `"${KEY_BROKER_SCHEMA}".http_envelope_seen`;

/**
 * Which policy HTTP envelopes were taken, in the key-broker's Postgres (`http_envelope_seen`): every
 * replica asks the same table and it outlives a restart, so an envelope id is taken once in all. An id
 * is kept until its envelope could no longer pass the freshness check; expired ids are deleted as new
 * ones come in.
 */
@Injectable()
export class HttpReplays {
  constructor(@Inject(DATA_SOURCE) private readonly ds: DataSource) {}

  /**
   * Takes `id` for `keepMs` (committed at once, whatever the request's outcome).
   * @throws CcmError REPLAYED (not retryable) when it was taken before and has not expired.
   */
  async admit(id: string, source: string, keepMs: number): Promise<void> {
    await this.ds.query(`DELETE FROM ${t} WHERE expires_at < now()`);
    const taken = await this.ds.query<unknown[]>(
      `INSERT INTO ${t} (id, source, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      [id, source, keepMs],
    );
    if (taken.length === 0) {
      throw new CcmError(ErrorCodes.Replayed, `envelope ${id} was already received: a replay is refused`, {
        retryable: false,
        details: { id },
      });
    }
  }
}
