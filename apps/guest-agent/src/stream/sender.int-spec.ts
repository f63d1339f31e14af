import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { CcmError, ErrorCodes } from '@ccm/contracts';
import { CHALLENGE_BYTES } from '@ccm/sealing';
import { afterEach, describe, expect, it } from 'vitest';
import { pollUntil } from '@ccm/testing';
import { typedFailure } from '../__fixtures__/guests.js';
import { type Reception, RoundReceiver } from './receiver.js';
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

describe('an image sent in pieces as it is read', () => {
  const key = randomBytes(32);
  const image = randomBytes(5 * 65_536 + 123);
  /** The image in pieces of 64 KiB, each yielded after a turn of the event loop (a file read); `fail` throws at piece `fail`. */
  async function* pieces(fail?: number): AsyncGenerator<Buffer> {
    for (let i = 0, off = 0; off < image.length; i++, off += 65_536) {
      await new Promise((r) => setImmediate(r));
      if (i === fail)
        throw new CcmError(ErrorCodes.ValidationFailed, 'pages-1.img shrank while it was read', {
          retryable: false,
        });
      yield image.subarray(off, off + 65_536);
    }
  }
  async function receiver(round: number) {
    const chunks: Buffer[] = [];
    let ended: Reception | undefined;
    const r = new RoundReceiver(
      key,
      { migrationId: 'mig-pieces', round },
      (x) => (ended = x),
      (p) => chunks.push(p),
    );
    const to = await r.listen('127.0.0.1');
    return { r, to, chunks, ended: () => ended };
  }

  it('is sealed and sent as it comes; the target hands on each chunk as it opens, the same image whole at the end', async () => {
    const t = await receiver(1);
    const sent = await sendRound(
      key,
      t.to,
      { migrationId: 'mig-pieces', round: 1 },
      pieces(),
      10_000,
      100_000,
    );
    expect(sent.chunks).toBe(Math.ceil(image.length / 100_000));
    const end = t.ended();
    expect(end?.status).toBe('complete');
    expect(t.chunks.length).toBe(sent.chunks);
    expect(t.chunks.slice(0, -1).every((c) => c.length === 100_000)).toBe(true);
    expect(Buffer.concat(t.chunks).equals(image)).toBe(true);
    expect(end?.status === 'complete' && end.image.equals(image)).toBe(true);
  });

  it("a piece that fails to be read fails the stream with the read's error; the target refuses the cut round", async () => {
    const t = await receiver(2);
    const e = await typedFailure(
      sendRound(key, t.to, { migrationId: 'mig-pieces', round: 2 }, pieces(3), 10_000, 100_000),
    );
    expect(e).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(e.message).toMatch(/shrank/);
    const end = await pollUntil(
      'the target ends the round',
      () => Promise.resolve(t.ended()),
      (x) => x !== undefined,
      {
        timeoutMs: 5_000,
        intervalMs: 20,
      },
    );
    expect(end?.status).toBe('refused');
    expect(end?.status === 'refused' && end.error.message).toMatch(/before its last chunk/);
    t.r.close();
  });
});
