import { pollUntil } from '@ccm/testing';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BROWNOUT_PACE, CONNECTED, startProber, type Prober } from './probe.js';

/**
 * The prober as a real process against a real HTTP server on loopback (no namespace, no root): a
 * probe that gets no answer must not stop the next ones, and the samples come in the order sent.
 */
describe('startProber', () => {
  let server: Server | undefined;
  let tcp: TcpServer | undefined;
  let prober: Prober | undefined;
  afterEach(async () => {
    await prober?.stop();
    server?.closeAllConnections();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    await new Promise((r) => (tcp ? tcp.close(r) : r(undefined)));
    server = tcp = undefined;
  });

  it('keeps probing at its rate while a probe hangs, and reports the hung one as unanswered in order', async () => {
    let requests = 0;
    server = createServer((_q, r) => {
      // The first request is never answered (a connection cut at a switch); the others at once.
      if (++requests > 1) r.end('w');
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    prober = startProber(undefined, '127.0.0.1', port, { timeoutMs: 300, gapMs: 5 });
    const probes = prober;
    await pollUntil(
      'the hung probe reported',
      () => probes.samples,
      (s) => s.length > 0 && s[0].by === undefined,
      {
        timeoutMs: 10_000,
      },
    );
    const samples = await prober.stop();
    const hung = samples[0];
    // Answers to probes sent while the first one hung: with back-to-back probes there would be none.
    const during = samples.filter((s) => s.by === 'w' && s.t < hung.t + 300);
    expect(during.length).toBeGreaterThan(5);
    expect(samples.slice(1).every((s) => s.by === 'w')).toBe(true);
    expect(samples.every((s, i) => i === 0 || s.t >= samples[i - 1].t)).toBe(true);
  });

  it('reports a workload that accepts and answers no HTTP as connected, one that resets as unanswered', async () => {
    // A container's line service: each line read is answered with a count.
    let mode: 'lines' | 'reset' = 'lines';
    tcp = createTcpServer((sock) => {
      if (mode === 'reset') return sock.resetAndDestroy();
      sock.on('error', () => undefined);
      sock.on('data', () => sock.write('42\n'));
    });
    await new Promise<void>((r) => tcp!.listen(0, '127.0.0.1', r));
    const { port } = tcp.address() as AddressInfo;
    prober = startProber(undefined, '127.0.0.1', port, { timeoutMs: 300, gapMs: 5 });
    const probes = prober;
    await pollUntil(
      'five probes answered',
      () => probes.samples.length,
      (n) => n >= 5,
      { timeoutMs: 10_000 },
    );
    mode = 'reset';
    const from = probes.samples.length;
    await pollUntil(
      'five probes reset',
      () => probes.samples.length,
      (n) => n >= from + 10,
      {
        timeoutMs: 10_000,
      },
    );
    const samples = await prober.stop();
    expect(samples.slice(0, 5).every((s) => s.by === CONNECTED)).toBe(true);
    // Probes in flight at the switch may still see the line service; the later ones are all resets.
    expect(samples.slice(-5).every((s) => s.by === undefined)).toBe(true);
  });

  it('counts an answer slower than the brownout pace allows at a pace that waits for it', async () => {
    // A guest under TCG: the line service answers 300 ms after the request (BROWNOUT_PACE waits 100 ms).
    tcp = createTcpServer((sock) => {
      sock.on('error', () => undefined);
      sock.on('data', () => setTimeout(() => sock.writable && sock.write('42\n'), 300));
    });
    await new Promise<void>((r) => tcp!.listen(0, '127.0.0.1', r));
    const { port } = tcp.address() as AddressInfo;
    const run = async (pace: { timeoutMs: number; gapMs: number }) => {
      prober = startProber(undefined, '127.0.0.1', port, pace);
      const probes = prober;
      await pollUntil(
        'ten probes done',
        () => probes.samples.length,
        (n) => n >= 10,
        { timeoutMs: 20_000 },
      );
      const samples = await probes.stop();
      prober = undefined;
      return samples;
    };
    expect((await run(BROWNOUT_PACE)).every((s) => s.by === undefined)).toBe(true);
    expect((await run({ timeoutMs: 1_000, gapMs: 100 })).every((s) => s.by === CONNECTED)).toBe(true);
  });
});
