import { type MoveFigures } from '@ccm/contracts';
import { pollUntil } from '@ccm/testing';
import { brownoutOf, startProber, type ProbeSample, type Prober } from '@ccm/wireguard';
import { expect } from 'vitest';

/** Whether every sample from the first answer by `by` on was answered by `by`. */
export function answeredOnlyBy(samples: readonly ProbeSample[], by: string): boolean {
  return samples.slice(samples.findIndex((s) => s.by === by)).every((s) => s.by === by);
}

/** How often the client must have been answered by a node before a test counts on it. */
const ANSWERS = 5;

/** Starts a client probing ip:port from `netns` (kept in `probers`) and waits until `by` answers it. */
export async function clientAnsweredBy(
  probers: Prober[],
  target: { netns: string; ip: string; port: number },
  by: string,
): Promise<Prober> {
  const p = startProber(target.netns, target.ip, target.port);
  probers.push(p);
  await pollUntil(
    `requests from ${target.netns} answered by ${by}`,
    () => p.samples.filter((s) => s.by === by).length,
    (n) => n >= ANSWERS,
    { timeoutMs: 15_000 },
  );
  return p;
}

/**
 * Checks a `cut-over` reply on `peers` real nodes against what a client probing throughout saw: the
 * overlay measured a brownout, the client is answered by `to` from some point on and only by it, and
 * its own brownout is measured. Stops the client; returns the figures.
 */
export async function expectMoveSeen(
  reply: unknown,
  client: Prober,
  move: { from: string; to: string; peers: number },
): Promise<{ cut: MoveFigures; clientBrownoutMs: number }> {
  const cut = reply as MoveFigures;
  expect(cut).toMatchObject({ peersUpdated: move.peers, sourceAnswered: true });
  expect(cut.brownoutMs).toEqual(expect.any(Number));
  await pollUntil(
    `the client answered by ${move.to}`,
    () => client.samples.filter((s) => s.by === move.to).length,
    (n) => n >= ANSWERS,
    { timeoutMs: 15_000 },
  );
  const seen = await client.stop();
  const clientBrownoutMs = brownoutOf(seen, move.from, move.to);
  expect(clientBrownoutMs).toEqual(expect.any(Number));
  expect(answeredOnlyBy(seen, move.to)).toBe(true);
  return { cut, clientBrownoutMs: clientBrownoutMs! };
}
