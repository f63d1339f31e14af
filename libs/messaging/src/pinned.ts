import { ErrorCodes, type Envelope } from '@ccm/contracts';
import { type TrustStore } from '@ccm/keys';
import { term, type Outcome } from './decorators.js';

/**
 * A host event's signer check: `term` (parked, UNAUTHORIZED) unless the envelope was signed by a key
 * pinned to `host` (its `trust.json` scope), the host the event's subject names; else `undefined`. NATS
 * already keeps a pinned host-agent to its own subjects; this refuses what an unpinned or mis-scoped
 * key signed.
 */
export function unlessPinnedTo(
  trust: TrustStore,
  env: Envelope,
  host: string,
  subject: string,
): Outcome | undefined {
  const scope = env.signerkey ? trust.lookup(env.signerkey)?.scope : undefined;
  if (scope && scope === host) return undefined;
  return term(
    `${ErrorCodes.Unauthorized}: ${subject} signed by a ${env.source} ${scope ? `pinned to ${scope}` : 'not pinned to any host'}`,
  );
}
