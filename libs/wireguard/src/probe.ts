import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface as lines } from 'node:readline';
import { inNetns } from './exec.js';
import { ipv4ToInt, netnsName } from './validate.js';

/** One probe of a workload: when (ms on the caller's performance.now() clock) and who answered, if anyone. */
export interface ProbeSample {
  readonly t: number;
  /** The answering node's name (the body of its HTTP reply), or undefined when nothing answered. */
  readonly by: string | undefined;
}

/** An HTTP server answering every GET with `name`, on 0.0.0.0:port (the workload stand-in). */
const SERVE = `const [name, port] = process.argv.slice(1);
require('node:http').createServer((q, r) => r.end(name)).listen(Number(port), '0.0.0.0', () => console.log('listening'));`;

/**
 * GETs http://ip:port/ back to back (a new connection each), one line per probe: `t by|-`, `t` on the
 * wall clock (the prober's time origin + its monotonic time), which the caller puts on its own clock.
 */
const PROBE = `const [ip, port, timeout, gap] = process.argv.slice(1);
const http = require('node:http');
let stop = false; process.stdin.on('end', () => (stop = true)); process.stdin.resume();
const once = () => new Promise((res) => {
  const t = performance.now();
  const req = http.get({ host: ip, port: Number(port), agent: false, timeout: Number(timeout) }, (r) => {
    let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => res([t, b]));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', () => res([t, '-']));
});
(async () => { while (!stop) { const [t, b] = await once(); process.stdout.write((performance.timeOrigin + t).toFixed(3) + ' ' + b + '\\n');
  await new Promise((r) => setTimeout(r, Number(gap))); } process.exit(0); })();`;

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

/** A running prober: `stop()` ends it and returns every sample. */
export interface Prober {
  readonly samples: ProbeSample[];
  stop(): Promise<ProbeSample[]>;
}

/** Probes ip:port from `netns` (this process's own namespace when undefined) until stopped (a new TCP connection and GET per probe). */
export function startProber(
  netns: string | undefined,
  ip: string,
  port: number,
  opts: { timeoutMs?: number; gapMs?: number } = {},
): Prober {
  ipv4ToInt(ip);
  const argv = inNetns(
    [process.execPath, '-e', PROBE, ip, String(port), String(opts.timeoutMs ?? 100), String(opts.gapMs ?? 1)],
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
