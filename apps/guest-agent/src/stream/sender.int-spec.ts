import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { CHALLENGE_BYTES } from '@ccm/sealing';
import { afterEach, describe, expect, it } from 'vitest';
import { typedFailure } from '../__fixtures__/guests.js';
import { sendRound } from './sender.js';

/** A target that accepts and then does `act` with the connection (a guest that died does nothing). */
async function target(act: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(act);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0 };
}

describe('a stream to a target that stops answering', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const s of servers.splice(0)) s.close();
  });
  const key = randomBytes(32);
  const binding = { migrationId: 'mig-stall', round: 1 };

  it.each<[string, (s: Socket) => void]>([
    ['never sends its challenge', () => undefined],
    [
      'takes the challenge exchange, then reads nothing (the kernel buffers fill)',
      (s) => {
        s.write(randomBytes(CHALLENGE_BYTES));
        s.pause();
      },
    ],
  ])(
    '%s: UNAVAILABLE after the stall time, long before the timeout',
    async (_what, act) => {
      const t = await target((s) => {
        sockets.push(s);
        act(s);
      });
      servers.push(t.server);
      const started = performance.now();
      const e = await typedFailure(
        sendRound(
          key,
          { host: '127.0.0.1', port: t.port },
          binding,
          randomBytes(48 << 20),
          60_000,
          1 << 20,
          500,
        ),
      );
      const took = performance.now() - started;
      expect(e).toMatchObject({ code: 'UNAVAILABLE', retryable: true, details: { round: 1 } });
      expect(e.message).toMatch(/nothing moved for 500 ms/);
      expect(took).toBeLessThan(20_000);
    },
    30_000,
  );
});
