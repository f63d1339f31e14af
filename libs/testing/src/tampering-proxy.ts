import { createServer, connect, type Server } from 'node:net';
import { FrameReader } from '@ccm/sealing';

export type Tamper = 'alter' | 'drop' | 'replay' | 'reorder' | 'cut';

/**
 * The untrusted host/network between two guests: forwards the target's challenge as is and the
 * source's frames with one `tamper` applied at frame `at` (none when there is no frame `at`). It
 * listens on `host` (a guest's host side) and keeps what the source sent in `seen`.
 */
export async function tamperingProxy(
  to: { host: string; port: number },
  binding: { migrationId: string; round: number },
  tamper: Tamper,
  at: number,
  host = '127.0.0.1',
): Promise<{ port: number; server: Server; seen: Buffer[] }> {
  /** Every byte the source sent, as the host sees it. */
  const seen: Buffer[] = [];
  const server = createServer((client) => {
    const upstream = connect(to.port, to.host);
    const reader = new FrameReader(binding);
    let n = 0;
    let held: Buffer | undefined;
    upstream.on('data', (d) => client.write(d));
    upstream.on('close', () => client.end());
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('data', (d: Buffer) => {
      // Once the target has answered and closed, drop what the source still sends: writing to the
      // closed upstream would reset the source's connection and could lose the verdict it carries.
      if (!upstream.writable) return;
      seen.push(d);
      for (const f of reader.push(d)) {
        const i = n++;
        if (i !== at && !(tamper === 'reorder' && i === at + 1)) {
          upstream.write(f);
          continue;
        }
        if (tamper === 'alter') {
          const c = Buffer.from(f);
          c[c.length - 20] ^= 0x01;
          upstream.write(c);
        } else if (tamper === 'replay') {
          upstream.write(f);
          upstream.write(f);
        } else if (tamper === 'reorder') {
          if (i === at) held = f;
          else {
            upstream.write(f);
            upstream.write(held!);
          }
        } else if (tamper === 'cut') {
          upstream.destroy();
          client.destroy();
        }
        // drop: nothing
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const a = server.address();
  return { port: typeof a === 'object' && a ? a.port : 0, server, seen };
}
