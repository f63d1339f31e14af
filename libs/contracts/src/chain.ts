import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from './canonical.js';

/**
 * The per-migration hash chain. Every event a service publishes about a migration (envelope
 * `correlationid` = migration id) carries, inside what it signs, its place in one chain:
 * `chainid` (`<migration id>/<publisher>`, see {@link chainIdFor}), `chainseq` (1, 2, 3, ... with no
 * gap) and `chainprev` (the {@link eventHash} of the chain's previous event, or the chain's genesis for
 * seq 1). The coordinator's events also carry `chainlinks`: the heads of the other chains of the
 * migration it had seen, so an event deleted from the end of a participant's chain is missed.
 */
export const ChainLinkSchema = z.object({ seq: z.number().int().min(1), hash: z.string().length(64) });
export type ChainLink = z.infer<typeof ChainLinkSchema>;

/** The envelope attributes of the chain; each is optional so events about nothing stay as they were. */
export const ChainAttributesSchema = z.object({
  chainid: z.string().min(1).max(300).optional(),
  chainseq: z.number().int().min(1).optional(),
  chainprev: z.string().length(64).optional(),
  chainlinks: z.record(z.string().max(300), ChainLinkSchema).optional(),
});
export type ChainAttributes = z.infer<typeof ChainAttributesSchema>;

/** Domain separation of a chain's genesis when nothing more specific (a request) starts it. */
export const CHAIN_GENESIS_CONTEXT = 'ccm-chain-genesis-v1\n';

/**
 * The chain a publisher writes for a migration. `publisher` is the signing identity, with the host of a
 * pinned host-agent (`host-agent@host-a`) and, for a publisher that keeps its chain head in memory
 * rather than in its database, its instance (`…#<instance>`): replicas sharing a database share one
 * chain, serialized by a row lock; others each keep their own.
 */
export function chainIdFor(correlationId: string, publisher: string): string {
  return `${correlationId}/${publisher}`;
}

/** The migration a chain id belongs to, and its publisher part. */
export function parseChainId(chainId: string): { correlationId: string; publisher: string } | undefined {
  const slash = chainId.indexOf('/');
  if (slash <= 0 || slash === chainId.length - 1) return undefined;
  return { correlationId: chainId.slice(0, slash), publisher: chainId.slice(slash + 1) };
}

/** The signing identity a chain's publisher part names (`host-agent@h1#x` → `host-agent`). */
export function publisherSigner(publisher: string): string {
  return publisher.split(/[@#]/)[0] ?? publisher;
}

/** SHA-256 (hex) of an envelope as signed, signature included: what the next link commits to. */
export function eventHash(envelope: unknown): string {
  return createHash('sha256').update(canonicalJson(envelope), 'utf8').digest('hex');
}

/** The genesis of a chain that no request starts: a commitment to the chain id alone. */
export function defaultGenesis(chainId: string): string {
  return createHash('sha256')
    .update(CHAIN_GENESIS_CONTEXT + chainId, 'utf8')
    .digest('hex');
}
