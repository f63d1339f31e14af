import type { Socket } from 'node:net';
import { REPLY_SCHEMAS, type QmpArgs, type QmpCommandName, type QmpReturn } from './commands.js';
import { connectWithRetry } from './connect.js';
import {
  QmpCommandError,
  QmpCommandTimeoutError,
  QmpEventTimeoutError,
  QmpGreetingError,
  QmpMalformedReplyError,
  QmpSocketClosedError,
  type QmpError,
} from './errors.js';
import { EventStream } from './event-stream.js';
import { checkEventData, type KnownEventName, type QmpEvent, type TypedQmpEvent } from './events.js';
import { excerpt, LineSplitter, parseWireMessage, type QmpGreeting, type WireMessage } from './protocol.js';
import { z } from 'zod';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_RETRY_INTERVAL_MS = 50;
export const DEFAULT_GREETING_TIMEOUT_MS = 10_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

export interface QmpConnectOptions {
  /** Keep retrying the connection (the socket may not exist yet) for this long. */
  connectTimeoutMs?: number;
  retryIntervalMs?: number;
  /** How long to wait for `{"QMP": ...}` once connected. */
  greetingTimeoutMs?: number;
  /** Default per-command timeout; each call may override it. */
  commandTimeoutMs?: number;
  /** QMP capabilities to enable in `qmp_capabilities` (e.g. `oob`); none by default. */
  enable?: string[];
  /** Aborting the signal abandons connecting and rejects with its reason. */
  signal?: AbortSignal;
}

export interface ExecuteOptions {
  timeoutMs?: number;
}

/** `execute('query-status')` needs no arguments; `execute('migrate', { uri })` requires them. */
export type ExecuteRest<C extends QmpCommandName> =
  undefined extends QmpArgs<C>
    ? [args?: QmpArgs<C>, options?: ExecuteOptions]
    : [args: QmpArgs<C>, options?: ExecuteOptions];

export interface WaitForEventOptions<E extends QmpEvent> {
  /** Only an event accepted by this predicate resolves the wait. */
  where?: (e: E) => boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface Pending {
  id: number;
  command: string;
  schema: z.ZodType | undefined;
  resolve: (v: unknown) => void;
  reject: (e: QmpError) => void;
  timer: NodeJS.Timeout;
}

/** Ids of timed-out commands are remembered (up to this many) so their late replies are recognised. */
const MAX_LATE_IDS = 1024;

/**
 * A QMP connection to one QEMU: greeting and capability negotiation, commands matched to replies by id
 * with per-command timeouts, and an event stream. Obtain one with {@link QmpClient.connect}.
 *
 * Failure policy: a line that cannot be framed as a QMP message (bad JSON, no `return`/`error`, an id
 * this client never sent, an event with the wrong data shape) means the stream can no longer be trusted,
 * so the connection is closed and every waiting command fails with that {@link QmpMalformedReplyError}.
 * A reply whose `return` has the wrong shape fails only its own command.
 */
export class QmpClient {
  private readonly splitter = new LineSplitter();
  private readonly pending = new Map<number, Pending>();
  private readonly lateIds = new Set<number>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private readonly closeHooks = new Set<(reason: QmpError) => void>();
  private nextId = 1;
  private closeReason: QmpError | undefined;
  private resolveClosed!: (reason: QmpError) => void;
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: QmpError) => void } | undefined;
  private closingByClient = false;
  private socketError: Error | undefined;
  private _greeting: QmpGreeting | undefined;

  /** Resolves (never rejects) with the reason once the connection is gone. */
  readonly closed: Promise<QmpError>;

  private constructor(
    private readonly sock: Socket,
    readonly path: string,
    private readonly commandTimeoutMs: number,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('error', (err) => (this.socketError = err));
    sock.on('close', () => this.onSocketClose());
  }

  /**
   * Connects (retrying until the socket exists, see {@link QmpConnectOptions.connectTimeoutMs}), reads
   * the greeting and negotiates capabilities. The returned client is in command mode.
   */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const sock = await connectWithRetry(path, {
      timeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      retryIntervalMs: opts.retryIntervalMs ?? DEFAULT_CONNECT_RETRY_INTERVAL_MS,
      signal: opts.signal,
    });
    const client = new QmpClient(sock, path, opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
    try {
      client._greeting = await client.awaitGreeting(opts.greetingTimeoutMs ?? DEFAULT_GREETING_TIMEOUT_MS);
      await client.execute('qmp_capabilities', opts.enable ? { enable: opts.enable } : undefined);
    } catch (err) {
      client.sock.destroy();
      throw err;
    }
    return client;
  }

  /** The greeting QEMU sent: its version and the QMP capabilities it offers. */
  get greeting(): QmpGreeting {
    return this._greeting!;
  }

  get isClosed(): boolean {
    return this.closeReason !== undefined;
  }

  /** Runs a command CCM knows and validates its reply against the command's schema. */
  execute<C extends QmpCommandName>(command: C, ...[args, options]: ExecuteRest<C>): Promise<QmpReturn<C>> {
    return this.send(command, args, REPLY_SCHEMAS[command], options) as Promise<QmpReturn<C>>;
  }

  /** Runs any command by name; the reply is returned unvalidated, for commands CCM has no type for. */
  executeUnchecked(
    command: string,
    args?: Record<string, unknown>,
    options?: ExecuteOptions,
  ): Promise<unknown> {
    return this.send(command, args, undefined, options);
  }

  private send(
    command: string,
    args: unknown,
    schema: z.ZodType | undefined,
    options: ExecuteOptions | undefined,
  ): Promise<unknown> {
    if (this.closeReason) {
      return Promise.reject(
        new QmpSocketClosedError(command, this.closeReason.message, { cause: this.closeReason }),
      );
    }
    const id = this.nextId++;
    const timeoutMs = options?.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.rememberLate(id);
        reject(new QmpCommandTimeoutError(command, id, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { id, command, schema, resolve, reject, timer });
      const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.sock.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** Calls `listener` for every event from now on; returns the unsubscribe function. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Events from now on as an async iterator (optionally only the named ones). It ends when the
   * connection closes (after delivering what was buffered), on `break`, or when `signal` aborts.
   */
  events(opts: { names?: readonly string[]; signal?: AbortSignal; maxBuffered?: number } = {}): EventStream {
    const names = opts.names ? new Set(opts.names) : undefined;
    const subs: (() => void)[] = [];
    const stream = new EventStream(() => subs.splice(0).forEach((off) => off()), opts.maxBuffered);
    subs.push(
      this.onEvent((e) => {
        if (!names || names.has(e.event)) stream.push(e);
      }),
    );
    subs.push(this.onClose(() => stream.end()));
    const signal = opts.signal;
    if (signal) {
      const onAbort = (): void => stream.end();
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      subs.push(() => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  /**
   * Resolves with the next event named `name` (and accepted by `where`). Subscribe before triggering
   * the event: events that arrived before the call are not seen.
   */
  waitForEvent<N extends KnownEventName>(
    name: N,
    opts?: WaitForEventOptions<TypedQmpEvent<N>>,
  ): Promise<TypedQmpEvent<N>>;
  waitForEvent(name: string, opts?: WaitForEventOptions<QmpEvent>): Promise<QmpEvent>;
  waitForEvent(name: string, opts: WaitForEventOptions<QmpEvent> = {}): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const subs: (() => void)[] = [];
      let timer: NodeJS.Timeout | undefined;
      const settle = (outcome: () => void): void => {
        for (const off of subs.splice(0)) off();
        clearTimeout(timer);
        outcome();
      };
      subs.push(
        this.onEvent((e) => {
          if (e.event === name && (!opts.where || opts.where(e))) settle(() => resolve(e));
        }),
      );
      if (opts.timeoutMs !== undefined) {
        const ms = opts.timeoutMs;
        timer = setTimeout(() => settle(() => reject(new QmpEventTimeoutError(name, ms))), ms);
      }
      if (opts.signal) {
        const signal = opts.signal;
        const onAbort = (): void =>
          settle(() => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        subs.push(() => signal.removeEventListener('abort', onAbort));
      }
      subs.push(
        this.onClose((reason) =>
          settle(() =>
            reject(
              new QmpSocketClosedError(undefined, `while waiting for event ${name}: ${reason.message}`, {
                cause: reason,
              }),
            ),
          ),
        ),
      );
    });
  }

  /** Closes the connection; waiting commands fail with {@link QmpSocketClosedError}. */
  async close(): Promise<void> {
    if (!this.closeReason) {
      this.closingByClient = true;
      this.sock.destroy();
    }
    await this.closed;
  }

  /** Runs `hook` once when the connection is gone (at once if it already is); returns the unsubscribe. */
  private onClose(hook: (reason: QmpError) => void): () => void {
    if (this.closeReason) {
      hook(this.closeReason);
      return () => undefined;
    }
    this.closeHooks.add(hook);
    return () => this.closeHooks.delete(hook);
  }

  private awaitGreeting(timeoutMs: number): Promise<QmpGreeting> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.greetingWaiter = undefined;
        reject(new QmpGreetingError(this.path, `nothing received within ${timeoutMs} ms`));
      }, timeoutMs);
      this.greetingWaiter = {
        resolve: (g) => (clearTimeout(timer), resolve(g)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  private onData(chunk: string): void {
    const { lines, overflow } = this.splitter.push(chunk);
    for (const line of lines) {
      if (this.closeReason) return;
      this.onMessage(parseWireMessage(line), line);
    }
    if (overflow && !this.closeReason) {
      this.poison(
        new QmpMalformedReplyError('bad-json', 'line exceeds the size limit', excerpt(this.splitter.pending)),
      );
    }
  }

  private onMessage(msg: WireMessage | QmpMalformedReplyError, line: string): void {
    if (this.greetingWaiter) {
      const w = this.greetingWaiter;
      this.greetingWaiter = undefined;
      if (!(msg instanceof QmpMalformedReplyError) && msg.kind === 'greeting') w.resolve(msg.greeting);
      else {
        const detail = `first message was not a greeting: ${excerpt(line)}`;
        w.reject(new QmpGreetingError(this.path, detail, { cause: msg }));
        this.sock.destroy();
      }
      return;
    }
    if (msg instanceof QmpMalformedReplyError) return this.poison(msg);
    switch (msg.kind) {
      case 'greeting':
        return this.poison(new QmpMalformedReplyError('bad-shape', 'a second greeting', excerpt(line)));
      case 'event': {
        const problem = checkEventData(msg.event, msg.data);
        if (problem)
          return this.poison(
            new QmpMalformedReplyError('bad-shape', `event ${msg.event}: ${problem}`, excerpt(line)),
          );
        return this.dispatch({ event: msg.event, data: msg.data, timestamp: msg.timestamp });
      }
      case 'return':
      case 'error':
        return this.onReply(msg, line);
    }
  }

  private onReply(msg: Extract<WireMessage, { kind: 'return' | 'error' }>, line: string): void {
    const p = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
    if (!p) {
      if (typeof msg.id === 'number' && this.lateIds.delete(msg.id)) return; // reply to a timed-out command
      const detail = `reply id ${JSON.stringify(msg.id) ?? 'missing'} matches no pending command`;
      return this.poison(new QmpMalformedReplyError('unexpected-id', detail, excerpt(line)));
    }
    this.pending.delete(p.id);
    clearTimeout(p.timer);
    if (msg.kind === 'error') return p.reject(new QmpCommandError(p.command, msg.errorClass, msg.desc));
    if (!p.schema) return p.resolve(msg.value);
    const r = p.schema.safeParse(msg.value);
    if (r.success) p.resolve(r.data);
    else
      p.reject(new QmpMalformedReplyError('bad-shape', z.prettifyError(r.error), excerpt(line), p.command));
  }

  private dispatch(e: QmpEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch (err) {
        // A listener's bug is not a protocol failure: surface it like EventEmitter would, without
        // abandoning the rest of this batch of messages.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  private rememberLate(id: number): void {
    this.lateIds.add(id);
    if (this.lateIds.size > MAX_LATE_IDS) this.lateIds.delete(this.lateIds.values().next().value!);
  }

  /** The stream cannot be trusted any more: fail everything with `err` and drop the connection. */
  private poison(err: QmpMalformedReplyError): void {
    this.finish(err, () => err);
    this.sock.destroy();
  }

  private onSocketClose(): void {
    const reason = this.closingByClient
      ? 'closed by client'
      : `peer closed the connection${this.socketError ? ` (${this.socketError.message})` : ''}`;
    const base = new QmpSocketClosedError(undefined, reason, { cause: this.socketError });
    this.finish(base, (p) => new QmpSocketClosedError(p.command, reason, { cause: this.socketError }));
    if (this.greetingWaiter) {
      this.greetingWaiter.reject(
        new QmpGreetingError(this.path, `connection closed before the greeting (${reason})`),
      );
      this.greetingWaiter = undefined;
    }
  }

  private finish(reason: QmpError, errFor: (p: Pending) => QmpError): void {
    if (this.closeReason) return;
    this.closeReason = reason;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(errFor(p));
    }
    this.pending.clear();
    this.resolveClosed(reason);
    for (const hook of [...this.closeHooks]) hook(reason);
    this.closeHooks.clear();
  }
}
