import { Inject, Injectable } from '@nestjs/common';
import { durableConsumer, eventHash, type Envelope } from '@ccm/contracts';
import { OnJetStream, ack, type MessageContext, type Outcome } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource } from 'typeorm';
import { z } from 'zod';
import { MIGRATION } from '../db/schema.js';

/**
 * Watches every signed event in CCM_EVENTS and records, on a running migration's row, the newest head
 * of each other publisher's hash chain for it (`observed_chains`). The coordinator's settled-step,
 * progress and `finished` events then commit to those heads, so an event later deleted from the end
 * of a participant's chain is missed by the audit instead of passing silently.
 */
@Injectable()
export class ChainWitness {
  constructor(@Inject(DATA_SOURCE) private readonly ds: DataSource) {}

  @OnJetStream({
    ...durableConsumer('saga-coordinator', 'chain-witness'),
    schema: z.unknown(),
  })
  async witness(_data: unknown, ctx: MessageContext): Promise<Outcome> {
    const env = ctx.envelope;
    if (env.source === 'saga-coordinator' || !env.chainid || !env.chainseq || !env.correlationid || !ctx.raw)
      return ack();
    const signed = JSON.parse(new TextDecoder().decode(ctx.raw)) as Envelope;
    const link = { seq: env.chainseq, hash: eventHash(signed) };
    await this.ds.query(
      `UPDATE ${MIGRATION} SET observed_chains = observed_chains || jsonb_build_object($2::text, $3::jsonb)
        WHERE id = $1 AND ended_at IS NULL
          AND COALESCE((observed_chains -> $2::text ->> 'seq')::int, 0) < $4`,
      [env.correlationid, env.chainid, JSON.stringify(link), env.chainseq],
    );
    return ack();
  }
}
