import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface as lines } from 'node:readline';
import { inNetns } from './exec.js';
import { ipv4ToInt, netnsName } from './validate.js';

/** One probe of a workload: when (ms on the caller's performance.now() clock) and who answered, if anyone. */
export interface ProbeSample {
  readonly t: number;
  /**
   * The answering node's name (the body of its HTTP reply); {@link CONNECTED} when a TCP connection
   * was accepted but the reply was no HTTP (a workload that is not a name server, e.g. a container's
   * line service); undefined when nothing answered.
   */
  readonly by: string | undefined;
}

/** A probe's `by` when the workload accepted the connection but answered no HTTP. */
export const CONNECTED = '+';

/** An HTTP server answering every GET with `name`, on 0.0.0.0:port (the workload stand-in). */
const SERVE = `const [name, port] = process.argv.slice(1);
require('node:http').createServer((q, r) => r.end(name)).listen(Number(port), '0.0.0.0', () => console.log('listening'));`;

/**
 * Starts a GET of http://ip:port/ every `gap` ms (a new connection each, several in flight when
 * answers are slow), each given up after `timeout` ms, and prints one line per probe in the order
 * they were sent: `t by|-`, `t` when it was sent on the wall clock (the prober's time origin + its
 * monotonic time), which the caller puts on its own clock (\`+\`: the connection was accepted but the
 * reply was no HTTP). Probes run at a fixed rate and not one
 * after the other so that a probe lost at a switch (a connection whose packets go to a node that no
 * longer holds the address) does not blind the prober for its whole timeout: the next probe leaves
 * `gap` ms later, and a brownout is seen to within `gap`.
 */
const PROBE = `const [ip, port, timeout, gap] = process.argv.slice(1);
const http = require('node:http');
const pending = [];
const flush = () => { while (pending.length && pending[0].by !== undefined) { const p = pending.shift();
  process.stdout.write((performance.timeOrigin + p.t).toFixed(3) + ' ' + p.by + '\\n'); } };
const once = () => {
  const p = { t: performance.now(), by: undefined, connected: false };
  pending.push(p);
  const done = (by) => { if (p.by === undefined) { p.by = by; flush(); } };
  const req = http.get({ host: ip, port: Number(port), agent: false, timeout: Number(timeout) }, (r) => {
    let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => done(b || '-'));
  });
  req.on('socket', (s) => s.once('connect', () => (p.connected = true)));
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => done(p.connected && e.code !== 'ECONNRESET' && e.message !== 'timeout' ? '+' : '-'));
};
const tick = setInterval(once, Number(gap)); once();
process.stdin.on('end', () => { clearInterval(tick);
  const t = setInterval(() => { if (!pending.length) { clearInterval(t); process.exit(0); } }, 5); });
process.stdin.resume();`;

/** Starts the workload stand-in in `netns`; resolves once it listens. Kill the process to stop it. */
export async function serveName(netns: string, name: string, port: number): Promise<ChildProcess> {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(name)) throw new Error(`bad server name ${name}`);
  const argv = inNetns([process.execPath, '-e', SERVE, name, String(port)], netnsName(netns));
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`server ${name} exited (${code})`)));
    child.stdout.once('data', () => resolve());
  });
  return child;
}

/**
 * How a prober probes: a new connection every `gapMs`, each given up after `timeoutMs`. Several are
 * in flight when answers take longer than the gap.
 */
export interface ProbePace {
  readonly timeoutMs: number;
  readonly gapMs: number;
}

/**
 * The pace that measures a brownout to within 5 ms (a probe lost at the switch blinds the prober for
 * 5 ms, not for its timeout). It suits a fast path only: an answer slower than 100 ms is no answer.
 */
export const BROWNOUT_PACE: ProbePace = Object.freeze({ timeoutMs: 100, gapMs: 5 });

/** A running prober: `stop()` ends it and returns every sample. */
export interface Prober {
  readonly samples: ProbeSample[];
  stop(): Promise<ProbeSample[]>;
}

/**
 * Probes ip:port from `netns` (this process's own namespace when undefined) until stopped: a new TCP
 * connection and GET every `gapMs`, each given up after `timeoutMs` (default {@link BROWNOUT_PACE}); the
 * samples in the order the probes were sent.
 */
export function startProber(
  netns: string | undefined,
  ip: string,
  port: number,
  opts: Partial<ProbePace> = {},
): Prober {
  ipv4ToInt(ip);
  const timeoutMs = opts.timeoutMs ?? BROWNOUT_PACE.timeoutMs;
  const gapMs = opts.gapMs ?? BROWNOUT_PACE.gapMs;
  const argv = inNetns(
    [process.execPath, '-e', PROBE, ip, String(port), String(timeoutMs), String(gapMs)],
    netns === undefined ? undefined : netnsName(netns),
  );
  const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const samples: ProbeSample[] = [];
  lines({ input: child.stdout }).on('line', (line) => {
    const [t, by] = line.split(' ');
    // On this process's performance.now() clock, as callers compare samples with their own times.
    samples.push({ t: Number(t) - performance.timeOrigin, by: by === '-' ? undefined : by });
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    samples,
    stop: async () => {
      child.stdin.end();
      const killer = setTimeout(() => child.kill('SIGKILL'), 2_000);
      await exited;
      clearTimeout(killer);
      return samples;
    },
  };
}

/**
 * A simulated prober: asks `answer()` who answers now, every `gapMs`, until stopped (the samples on
 * this process's performance.now() clock, as {@link startProber}'s).
 */
export function startSampling(gapMs: number, answer: () => string | undefined): Prober {
  const samples: ProbeSample[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      samples.push({ t: performance.now(), by: answer() });
      await new Promise((r) => setTimeout(r, gapMs));
    }
  })();
  return {
    samples,
    stop: async () => {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

/**
 * The brownout of a move seen in `samples`: from the last answer by `from` to the first answer by
 * `to` after it (ms), or undefined when `to` never answered after `from`.
 */
export function brownoutOf(samples: readonly ProbeSample[], from: string, to: string): number | undefined {
  const firstTo = samples.findIndex((s) => s.by === to);
  if (firstTo < 0) return undefined;
  let lastFrom = -1;
  for (let i = firstTo - 1; i >= 0; i--)
    if (samples[i].by === from) {
      lastFrom = i;
      break;
    }
  if (lastFrom < 0) return undefined;
  return samples[firstTo].t - samples[lastFrom].t;
}
