import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  CcmError,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  NONCE_BYTES,
  NONCE_CALLERS,
  NONCE_TTL_MS,
  NonceRequestSchema,
  type NonceReply,
} from '@ccm/contracts';
import { OnRequest, type MessageContext } from '@ccm/messaging';
import { DATA_SOURCE, updateReturning } from '@ccm/persistence';
import { type DataSource } from 'typeorm';
import { type z } from 'zod';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';

const t = `"${KEY_BROKER_SCHEMA}".nonce`;

/** Why a nonce was refused. */
export type NonceFault = 'unknown' | 'used' | 'expired' | 'other-migration' | 'other-audience';

export class NonceRefusedError extends CcmError {
  constructor(
    readonly nonce: string,
    readonly fault: NonceFault,
  ) {
    super(KeyBrokerErrorCodes.NonceRefused, `nonce ${nonce.slice(0, 16)}… refused: ${fault}`, {
      retryable: false,
      effect: 'none',
      details: { nonce, reason: fault },
    });
  }
}

/**
 * The broker's nonces: 32 random bytes, single use, valid {@link NONCE_TTL_MS}. Issue and use each
 * commit on their own (never inside a handler's transaction), so a use survives the refusal it ends in
 * and a replay of the same nonce is refused whatever happened to the first attempt.
 */
@Injectable()
export class NonceStore {
  constructor(@Inject(DATA_SOURCE) private readonly ds: DataSource) {}

  /** A new nonce for `audience` (a guest VM id, or `caller:<signer>`), bound to a migration if given. */
  async issue(audience: string, migrationId?: string): Promise<NonceReply> {
    const nonce = randomBytes(NONCE_BYTES).toString('hex');
    const rows = await this.ds.query<Array<{ expires_at: Date }>>(
      `INSERT INTO ${t} (nonce, audience, migration_id, expires_at)
       VALUES ($1, $2, $3, now() + ($4 || ' milliseconds')::interval) RETURNING expires_at`,
      [nonce, audience, migrationId ?? null, String(NONCE_TTL_MS)],
    );
    return { nonce, expiresAt: new Date(rows[0].expires_at).toISOString() };
  }

  /**
   * Uses `nonce` once, for `migrationId` by `audience`. @throws NonceRefusedError naming the fault; a
   * nonce bound to another migration or audience is spent all the same (it was shown to the wrong party).
   */
  async use(nonce: string, migrationId: string, audience: string): Promise<void> {
    const used = await updateReturning<{ migration_id: string | null; audience: string }>(
      this.ds,
      `UPDATE ${t} SET used_at = now() WHERE nonce = $1 AND used_at IS NULL AND expires_at > now()
       RETURNING migration_id, audience`,
      [nonce],
    );
    const row = used[0];
    if (row) {
      if (row.migration_id !== migrationId) throw new NonceRefusedError(nonce, 'other-migration');
      if (row.audience !== audience) throw new NonceRefusedError(nonce, 'other-audience');
      return;
    }
    const [known] = await this.ds.query<Array<{ used: boolean }>>(
      `SELECT used_at IS NOT NULL AS used FROM ${t} WHERE nonce = $1`,
      [nonce],
    );
    throw new NonceRefusedError(nonce, !known ? 'unknown' : known.used ? 'used' : 'expired');
  }

  /** Forgets nonces expired for a minute (they can only be refused as unknown from then on). */
  async prune(): Promise<void> {
    await this.ds.query(`DELETE FROM ${t} WHERE expires_at < now() - interval '1 minute'`);
  }
}

/** `nonce`: the coordinator or a guest-agent asks for a fresh nonce (bound to a migration if named). */
@Injectable()
export class NonceHandler {
  constructor(private readonly nonces: NonceStore) {}

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.nonce),
    schema: NonceRequestSchema,
    allow: [...NONCE_CALLERS],
  })
  async nonce(req: z.infer<typeof NonceRequestSchema>, ctx: MessageContext): Promise<NonceReply> {
    await this.nonces.prune();
    return this.nonces.issue(`caller:${ctx.envelope.source}`, req.migrationId);
  }
}
