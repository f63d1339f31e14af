import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { CHALLENGE_BYTES, FrameReader, isSealingError, type SealingError, StreamOpener } from '@ccm/sealing';

/** How a round's reception ended. */
export type Reception =
  | { readonly status: 'receiving' }
  | { readonly status: 'complete'; readonly image: Buffer; readonly chunks: number }
  | { readonly status: 'refused'; readonly error: SealingError | Error };

/**
 * One round's listener on the target guest. On the first connection it sends a fresh challenge, then
 * opens the sealed frames strictly in order; the first refusal ends the round (the sender is told
 * `ERR <json>`), a complete stream is answered `OK`. Each opened chunk's plaintext goes to `onChunk`
 * at once (the target writes it while the rest arrives), the round's end to `onEnd`. It takes one connection and then stops listening.
 */
export class RoundReceiver {
  private readonly server: Server;
  private readonly challenge = randomBytes(CHALLENGE_BYTES);
  private state: Reception = { status: 'receiving' };
  private taken = false;

  constructor(
    key: Buffer,
    private readonly binding: { migrationId: string; round: number },
    private readonly onEnd: (r: Reception) => void,
    /** Each chunk's plaintext as soon as it opened (in order; the round is not verified until its end). */
    private readonly onChunk?: (plaintext: Buffer) => void,
  ) {
    const opener = new StreamOpener(key, { ...binding, challenge: this.challenge });
    this.server = createServer((sock) => this.accept(sock, opener));
  }

  get reception(): Reception {
    return this.state;
  }

  listen(host: string): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, host, () => {
        const a = this.server.address();
        if (a && typeof a === 'object') resolve({ host, port: a.port });
        else reject(new Error('no address'));
      });
    });
  }

  close(): void {
    this.server.close();
    if (this.state.status === 'receiving')
      this.end({ status: 'refused', error: new Error('the round was abandoned') });
  }

  private end(r: Reception): void {
    if (this.state.status !== 'receiving') return;
    this.state = r;
    this.server.close();
    this.onEnd(r);
  }

  private accept(sock: Socket, opener: StreamOpener): void {
    if (this.taken) {
      sock.destroy();
      return;
    }
    this.taken = true;
    const reader = new FrameReader(this.binding);
    const parts: Buffer[] = [];
    const refuse = (err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      const wire = isSealingError(e)
        ? { code: e.code, message: e.message, chunk: chunkOf(e) }
        : { message: e.message };
      sock.end(`ERR ${JSON.stringify(wire)}\n`);
      this.end({ status: 'refused', error: e });
    };
    sock.write(this.challenge);
    sock.on('data', (data: Buffer) => {
      if (this.state.status !== 'receiving') return;
      try {
        for (const frame of reader.push(data)) {
          const c = opener.open(frame);
          parts.push(c.plaintext);
          this.onChunk?.(c.plaintext);
          if (c.last) {
            sock.end('OK\n');
            this.end({ status: 'complete', image: Buffer.concat(parts), chunks: opener.chunks });
            return;
          }
        }
      } catch (e) {
        refuse(e);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      if (this.state.status !== 'receiving') return;
      try {
        opener.finish(reader.pending > 0 ? 'the connection closed inside a frame' : 'the connection closed');
      } catch (e) {
        this.end({ status: 'refused', error: e as Error });
      }
    });
  }
}

/** The chunk a sealing error names, for replies and logs. */
export function chunkOf(e: SealingError): Record<string, unknown> | undefined {
  return 'chunk' in e ? (e as unknown as { chunk: Record<string, unknown> }).chunk : undefined;
}
