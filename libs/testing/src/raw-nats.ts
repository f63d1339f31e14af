import { connect as tcpConnect, type Socket } from 'node:net';
import { fromSeed } from '@nats-io/nkeys';

/** One message the server delivered to a raw subscription. */
export interface RawMessage {
  subject: string;
  sid: number;
  reply?: string;
  /** Header block as the server sent it (`NATS/1.0 …`), when the message had headers. */
  headers?: string;
  data: Buffer;
}

/** What the server said about one operation: accepted, or the `-ERR` text it answered with. */
export type RawOutcome = { ok: true } | { ok: false; error: string };

export class RawNatsError extends Error {
  override name = 'RawNatsError';
}

const CRLF = '\r\n';

/**
 * A NATS protocol client written against the wire protocol alone — no nats.js, no CCM code — for
 * probing the server as an attacker would: what a given NKEY user may publish, subscribe to and ask
 * of the JetStream API. Permission violations arrive as asynchronous `-ERR` lines; `publishChecked`
 * and `subscribeChecked` follow an operation with a PING and report any `-ERR` that came before the PONG.
 */
export class RawNatsClient {
  /** Every `-ERR` line the server sent, in order. */
  readonly errors: string[] = [];
  private buf = Buffer.alloc(0);
  private nextSid = 1;
  private readonly subs = new Map<number, (m: RawMessage) => void>();
  private readonly pongs: (() => void)[] = [];
  private closed = false;
  private closeReason?: string;
  private inboxSeq = 0;

  private constructor(
    private readonly socket: Socket,
    readonly info: Record<string, unknown>,
    private readonly inboxPrefix: string,
  ) {}

  /**
   * Connects and authenticates; `seed` is an NKEY user seed (authentication by signing the server's
   * nonce). Rejects with the server's `-ERR` when authentication fails.
   */
  static async connect(opts: {
    port: number;
    host?: string;
    seed?: Uint8Array | string;
    name?: string;
    /** Reply subjects of `request` start with this (an identity may subscribe only to its own inbox). */
    inboxPrefix?: string;
    timeoutMs?: number;
  }): Promise<RawNatsClient> {
    const socket = tcpConnect({ port: opts.port, host: opts.host ?? '127.0.0.1' });
    socket.setNoDelay(true);
    const timeoutMs = opts.timeoutMs ?? 5000;
    const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
      let pending = Buffer.alloc(0);
      const timer = setTimeout(() => fail(new RawNatsError('no INFO from the server')), timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(e);
      };
      socket.once('error', fail);
      const onData = (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        const end = pending.indexOf(CRLF);
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('error', fail);
        clearTimeout(timer);
        const line = pending.subarray(0, end).toString();
        if (!line.startsWith('INFO ')) return fail(new RawNatsError(`expected INFO, got ${line}`));
        if (pending.length > end + 2) socket.unshift(pending.subarray(end + 2));
        resolve(JSON.parse(line.slice(5)) as Record<string, unknown>);
      };
      socket.on('data', onData);
    });
    const client = new RawNatsClient(socket, info, opts.inboxPrefix ?? '_INBOX');
    socket.on('data', (chunk: Buffer) => client.onData(chunk));
    socket.on('close', () => client.onClose('connection closed'));
    socket.on('error', (e) => client.onClose(e.message));
    const connectOpts: Record<string, unknown> = {
      verbose: false,
      pedantic: false,
      protocol: 1,
      headers: true,
      no_responders: true,
      echo: true,
      lang: 'raw-probe',
      version: '0',
      name: opts.name ?? 'raw-probe',
    };
    if (opts.seed !== undefined) {
      const seed = typeof opts.seed === 'string' ? new TextEncoder().encode(opts.seed) : opts.seed;
      const kp = fromSeed(seed);
      const nonce = typeof info['nonce'] === 'string' ? info['nonce'] : '';
      connectOpts['nkey'] = kp.getPublicKey();
      connectOpts['sig'] = Buffer.from(kp.sign(new TextEncoder().encode(nonce))).toString('base64url');
    }
    client.write(`CONNECT ${JSON.stringify(connectOpts)}${CRLF}`);
    const outcome = await client.ping(timeoutMs);
    if (!outcome.ok) {
      client.close();
      throw new RawNatsError(`connect refused: ${outcome.error}`);
    }
    return client;
  }

  /** Sends PING and waits for PONG; any `-ERR` that arrived meanwhile is the outcome. */
  async ping(timeoutMs = 5000): Promise<RawOutcome> {
    const before = this.errors.length;
    if (this.closed) return { ok: false, error: this.closeReason ?? 'closed' };
    const pong = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.pongs.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    this.write(`PING${CRLF}`);
    const answered = await pong;
    const errs = this.errors.slice(before);
    if (errs.length > 0) return { ok: false, error: errs.join('; ') };
    if (!answered) return { ok: false, error: this.closeReason ?? 'no PONG before the deadline' };
    return { ok: true };
  }

  /** PUB or HPUB; fire and forget (see `publishChecked`). */
  publish(
    subject: string,
    payload: Uint8Array | string = '',
    opts: { reply?: string; headers?: Record<string, string> } = {},
  ): void {
    const data = Buffer.from(payload);
    const reply = opts.reply ? ` ${opts.reply}` : '';
    if (opts.headers && Object.keys(opts.headers).length > 0) {
      const hdr = Buffer.from(
        `NATS/1.0${CRLF}${Object.entries(opts.headers)
          .map(([k, v]) => `${k}: ${v}${CRLF}`)
          .join('')}${CRLF}`,
      );
      this.socket.write(
        Buffer.concat([
          Buffer.from(`HPUB ${subject}${reply} ${hdr.length} ${hdr.length + data.length}${CRLF}`),
          hdr,
          data,
          Buffer.from(CRLF),
        ]),
      );
    } else {
      this.socket.write(
        Buffer.concat([Buffer.from(`PUB ${subject}${reply} ${data.length}${CRLF}`), data, Buffer.from(CRLF)]),
      );
    }
  }

  /** Publishes, then reports whether the server refused it (a permissions violation). */
  async publishChecked(
    subject: string,
    payload: Uint8Array | string = '',
    opts: { reply?: string; headers?: Record<string, string> } = {},
  ): Promise<RawOutcome> {
    this.publish(subject, payload, opts);
    return this.ping();
  }

  /** SUB; messages go to `onMessage` (or are collected in the returned array). */
  subscribe(
    subject: string,
    opts: { queue?: string; onMessage?: (m: RawMessage) => void } = {},
  ): {
    sid: number;
    messages: RawMessage[];
    unsubscribe: () => void;
  } {
    const sid = this.nextSid++;
    const messages: RawMessage[] = [];
    this.subs.set(sid, (m) => {
      messages.push(m);
      opts.onMessage?.(m);
    });
    this.write(`SUB ${subject}${opts.queue ? ` ${opts.queue}` : ''} ${sid}${CRLF}`);
    return {
      sid,
      messages,
      unsubscribe: () => {
        this.subs.delete(sid);
        this.write(`UNSUB ${sid}${CRLF}`);
      },
    };
  }

  /** Subscribes, then reports whether the server refused the subscription. */
  async subscribeChecked(
    subject: string,
    opts: { queue?: string } = {},
  ): Promise<RawOutcome & { messages: RawMessage[] }> {
    const sub = this.subscribe(subject, opts);
    const outcome = await this.ping();
    return { ...outcome, messages: sub.messages };
  }

  /**
   * A request: subscribes to a fresh reply subject under the inbox prefix, publishes, waits for one
   * reply. Rejects with the server's `-ERR` (a refused publish or subscribe), on no responders (a 503
   * status reply) or at the deadline.
   */
  async request(
    subject: string,
    payload: Uint8Array | string = '',
    opts: { headers?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<RawMessage> {
    const reply = `${this.inboxPrefix}.raw${process.pid}.${++this.inboxSeq}`;
    const before = this.errors.length;
    let resolveMsg!: (m: RawMessage) => void;
    const got = new Promise<RawMessage>((r) => (resolveMsg = r));
    const sub = this.subscribe(reply, { onMessage: (m) => resolveMsg(m) });
    this.publish(subject, payload, { reply, headers: opts.headers });
    const check = await this.ping();
    if (!check.ok) {
      sub.unsubscribe();
      throw new RawNatsError(check.error);
    }
    const timeoutMs = opts.timeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const msg = await Promise.race([
        got,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const errs = this.errors.slice(before);
            reject(
              new RawNatsError(errs.length ? errs.join('; ') : `no reply to ${subject} in ${timeoutMs} ms`),
            );
          }, timeoutMs);
        }),
      ]);
      if (msg.headers?.startsWith('NATS/1.0 503')) throw new RawNatsError(`no responders for ${subject}`);
      return msg;
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
    }
  }

  /** A JetStream API call (`$JS.API.<api>`) with a JSON body; resolves to the parsed JSON reply. */
  async jsApi(api: string, body: unknown = {}, timeoutMs?: number): Promise<Record<string, unknown>> {
    const msg = await this.request(`$JS.API.${api}`, JSON.stringify(body), { timeoutMs });
    return JSON.parse(msg.data.toString()) as Record<string, unknown>;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private write(line: string): void {
    if (!this.closed) this.socket.write(line);
  }

  private onClose(reason: string): void {
    if (!this.closed) this.closeReason = reason;
    this.closed = true;
    for (const p of this.pongs.splice(0)) p();
  }

  private onData(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      const end = this.buf.indexOf(CRLF);
      if (end < 0) return;
      const line = this.buf.subarray(0, end).toString();
      const [op = ''] = line.split(' ', 1);
      if (op === 'MSG' || op === 'HMSG') {
        const parts = line.split(' ');
        const hasHeaders = op === 'HMSG';
        const total = Number(parts[parts.length - 1]);
        const hdrLen = hasHeaders ? Number(parts[parts.length - 2]) : 0;
        const fixed = hasHeaders ? 5 : 4;
        const reply = parts.length > fixed ? parts[3] : undefined;
        if (this.buf.length < end + 2 + total + 2) return;
        const body = this.buf.subarray(end + 2, end + 2 + total);
        this.buf = this.buf.subarray(end + 2 + total + 2);
        const msg: RawMessage = {
          subject: parts[1] ?? '',
          sid: Number(parts[2]),
          reply,
          headers: hasHeaders ? body.subarray(0, hdrLen).toString() : undefined,
          data: Buffer.from(body.subarray(hdrLen)),
        };
        this.subs.get(msg.sid)?.(msg);
        continue;
      }
      this.buf = this.buf.subarray(end + 2);
      if (op === 'PING') this.write(`PONG${CRLF}`);
      else if (op === 'PONG') this.pongs.shift()?.();
      else if (op === '-ERR') this.errors.push(line.slice(5).trim());
    }
  }
}
