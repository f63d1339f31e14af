import { connect, createServer, type Server } from 'node:net';

/**
 * A man in the middle for the simulated hypervisor's migration stream (frames of `u32 length ‖ u8 type
 * ‖ payload`): forwards source → destination and back, and flips one ciphertext byte of the
 * `pageIndex`-th PAGE frame (type 2). The byte sits after the frame's gfn and kind (5 bytes) and the
 * SEV packet header (52 bytes), so the frame still parses: only the packet's MAC can notice.
 */
export interface TamperProxy {
  uri: string;
  /** How many PAGE frames went through, and whether one was changed. */
  stats: { pages: number; tampered: boolean };
  close(): Promise<void>;
}

const PAGE_FRAME = 2;
const CIPHERTEXT_OFFSET = 5 + 52 + 100;

export async function startTamperProxy(
  host: string,
  target: { host: string; port: number },
  pageIndex: number,
): Promise<TamperProxy> {
  const stats = { pages: 0, tampered: false };
  const server: Server = createServer((client) => {
    const upstream = connect(target);
    let pending = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      const out: Buffer[] = [];
      while (pending.length >= 5 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const frame = Buffer.from(pending.subarray(0, 4 + pending.readUInt32BE(0)));
        pending = pending.subarray(frame.length);
        if (frame[4] === PAGE_FRAME && stats.pages++ === pageIndex && frame.length > 5 + CIPHERTEXT_OFFSET) {
          frame[5 + CIPHERTEXT_OFFSET] = frame[5 + CIPHERTEXT_OFFSET] ^ 0x01;
          stats.tampered = true;
        }
        out.push(frame);
      }
      if (out.length) upstream.write(Buffer.concat(out));
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    // A side that closes is ended on the other (end, not destroy: destroy would drop what is still
    // queued, such as the destination's NACK on its way to the source); an error tears both down.
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => upstream.end());
    upstream.on('close', () => client.end());
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const port = (server.address() as { port: number }).port;
  return {
    uri: `tcp:${host}:${port}`,
    stats,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
