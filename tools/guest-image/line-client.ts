import { connect, type Socket } from 'node:net';

/**
 * A TCP client of a container's line service (the runc workload answers each line with its count):
 * ONE connection, a line every `everyMs`, each answer recorded with the time it came. It never
 * reconnects: `ended` says whether the socket saw close, end or an error.
 */
export class LineClient {
  readonly answers: Array<{ at: number; n: number }> = [];
  ended: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(private readonly socket: Socket) {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        this.answers.push({ at: performance.now(), n: Number(buf.slice(0, i)) });
        buf = buf.slice(i + 1);
      }
    });
    socket.on('error', (e) => (this.ended ??= `error: ${e.message}`));
    socket.on('end', () => (this.ended ??= 'end (FIN from the server)'));
    socket.on('close', () => (this.ended ??= 'close'));
  }

  /** Connects (one attempt) and starts sending. */
  static open(host: string, port: number, everyMs = 100): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        const c = new LineClient(s);
        c.timer = setInterval(() => {
          if (!c.ended) s.write('?\n');
        }, everyMs);
        resolve(c);
      });
    });
  }

  /** The connection's local address and port (one socket for its whole life). */
  get local(): string {
    return `${this.socket.localAddress ?? '?'}:${this.socket.localPort ?? '?'}`;
  }

  /** The highest count answered so far (0 before any). */
  last(): number {
    return this.answers.reduce((m, a) => Math.max(m, a.n), 0);
  }

  /** The longest time between two answers after `from` (performance.now()): the brownout the client saw. */
  longestGap(from = 0): number {
    let gap = 0;
    const seen = this.answers.filter((a) => a.at >= from);
    for (let i = 1; i < seen.length; i++) gap = Math.max(gap, seen[i].at - seen[i - 1].at);
    return gap;
  }

  close(): void {
    clearInterval(this.timer);
    this.ended ??= 'closed by the test';
    this.socket.destroy();
  }
}
