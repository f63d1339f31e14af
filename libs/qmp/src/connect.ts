import { createConnection, type Socket } from 'node:net';
import { QmpConnectError, QmpConnectTimeoutError } from './errors.js';

/**
 * Errors that mean "QEMU has not created or started listening on the socket yet": QEMU creates the
 * socket a little after it starts, so these are retried until the deadline.
 */
const TRANSIENT = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN', 'ECONNRESET']);

export interface ConnectRetryOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Pause between attempts. */
  retryIntervalMs: number;
  /** Aborting rejects with the signal's reason (e.g. the launcher's "QEMU exited" error). */
  signal?: AbortSignal;
}

function attempt(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const onError = (err: Error): void => {
      sock.destroy();
      reject(err);
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      resolve(sock);
    });
  });
}

/** Connects to a unix socket, retrying transient failures until `timeoutMs` has passed. */
export async function connectWithRetry(path: string, opts: ConnectRetryOptions): Promise<Socket> {
  const deadline = Date.now() + opts.timeoutMs;
  let attempts = 0;
  let last: unknown;
  for (;;) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    attempts++;
    try {
      const sock = await attempt(path);
      if (opts.signal?.aborted) {
        sock.destroy();
        throw opts.signal.reason;
      }
      return sock;
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const code = (err as NodeJS.ErrnoException).code;
      if (!code || !TRANSIENT.has(code)) throw new QmpConnectError(path, code, { cause: err });
      last = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new QmpConnectTimeoutError(path, opts.timeoutMs, attempts, { cause: last });
    await pause(Math.min(opts.retryIntervalMs, left), opts.signal);
  }
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
