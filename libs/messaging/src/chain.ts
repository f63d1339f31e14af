import { chainIdFor, defaultGenesis, eventHash, type ChainAttributes, type Envelope } from '@ccm/contracts';
import { type EntityManager } from 'typeorm';

/**
 * The publisher part of a chain id: the signing identity, with the host (or VM) a pinned agent speaks
 * for, and with `#<instance>` when the head lives in this process's memory (no shared database).
 */
export function publisherName(service: string, scopeId?: string, instance?: string): string {
  return `${service}${scopeId ? `@${scopeId}` : ''}${instance ? `#${instance}` : ''}`;
}

/**
 * Appends to a chain whose head is a row of `<schema>.event_chain`, locked until the caller's
 * transaction ends: replicas sharing the schema extend the one chain in turn, and a rolled-back
 * transaction leaves the head where it was. Returns the attributes of the next event; call
 * {@link advanceDbChain} with the sealed event in the same transaction.
 */
export async function nextDbLink(
  manager: EntityManager,
  schema: string,
  chainId: string,
  genesis?: string,
): Promise<ChainAttributes> {
  const t = `"${schema}".event_chain`;
  await manager.query(`INSERT INTO ${t} (chain_id, seq, head) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING`, [
    chainId,
    genesis ?? defaultGenesis(chainId),
  ]);
  const rows = await manager.query<Array<{ seq: number; head: string }>>(
    `SELECT seq, head FROM ${t} WHERE chain_id = $1 FOR UPDATE`,
    [chainId],
  );
  const head = rows[0];
  if (!head) throw new Error(`event chain ${chainId} vanished`);
  return { chainid: chainId, chainseq: head.seq + 1, chainprev: head.head };
}

export async function advanceDbChain(manager: EntityManager, schema: string, env: Envelope): Promise<void> {
  await manager.query(
    `UPDATE "${schema}".event_chain SET seq = $2, head = $3, updated_at = now() WHERE chain_id = $1`,
    [env.chainid, env.chainseq, eventHash(env)],
  );
}

/**
 * Chains kept in memory, for events published straight to JetStream (no outbox). Each chain's
 * publishes run one after another, so its events reach the stream in chain order; the publisher name
 * carries this process's instance, so another replica or a restart starts a chain of its own.
 */
export class MemoryChains {
  private readonly heads = new Map<string, { seq: number; head: string }>();
  private readonly tails = new Map<string, Promise<unknown>>();

  constructor(private readonly publisher: string) {}

  /** Runs `publish` with the next link of the migration's chain, after the chain's earlier publishes. */
  append<R extends Envelope>(
    correlationId: string,
    genesis: string | undefined,
    publish: (link: ChainAttributes) => Promise<R>,
  ): Promise<R> {
    const chainId = chainIdFor(correlationId, this.publisher);
    const run = async (): Promise<R> => {
      const head = this.heads.get(chainId) ?? { seq: 0, head: genesis ?? defaultGenesis(chainId) };
      const env = await publish({ chainid: chainId, chainseq: head.seq + 1, chainprev: head.head });
      this.heads.set(chainId, { seq: head.seq + 1, head: eventHash(env) });
      return env;
    };
    const next = (this.tails.get(chainId) ?? Promise.resolve()).then(run, run);
    const tail = next.catch(() => undefined);
    this.tails.set(chainId, tail);
    void tail.then(() => {
      if (this.tails.get(chainId) === tail) this.tails.delete(chainId);
    });
    return next;
  }
}
