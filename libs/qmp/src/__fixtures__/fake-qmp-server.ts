import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A command as the fake server received it. */
export interface ReceivedCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
}

/** One accepted connection, driven by the test script. */
export class FakeConnection {
  readonly received: ReceivedCommand[] = [];
  constructor(readonly socket: Socket) {}

  /** Sends one message as QEMU frames it (JSON + CRLF); a string is sent verbatim. */
  send(msg: object | string): void {
    this.socket.write(typeof msg === 'string' ? msg : `${JSON.stringify(msg)}\r\n`);
  }
  reply(cmd: ReceivedCommand, value: unknown = {}): void {
    this.send({ return: value, id: cmd.id });
  }
  error(cmd: ReceivedCommand, cls: string, desc: string): void {
    this.send({ error: { class: cls, desc }, id: cmd.id });
  }
  event(event: string, data?: Record<string, unknown>): void {
    this.send({ event, ...(data ? { data } : {}), timestamp: { seconds: 1_700_000_000, microseconds: 1 } });
  }
  close(): void {
    this.socket.destroy();
  }
}

export const GREETING = {
  QMP: {
    version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'Debian 1:7.2+dfsg-7' },
    capabilities: ['oob'],
  },
};

export interface FakeQmpScript {
  /** What to send on connect; `null` sends nothing. Default: a QEMU 7.2 greeting. */
  greeting?: object | string | null;
  /**
   * Called for every command after the default `qmp_capabilities` handling. Return nothing to leave
   * the command unanswered (the test answers later, or never).
   */
  onCommand?: (cmd: ReceivedCommand, conn: FakeConnection) => void;
  /** Answer qmp_capabilities automatically (default true). */
  autoCapabilities?: boolean;
}

/**
 * A scripted QMP peer on a unix socket in a fresh temp dir: a test of pure protocol code needs no QEMU.
 */
export class FakeQmpServer {
  private constructor(
    readonly connections: FakeConnection[],
    private readonly server: Server,
    readonly dir: string,
    readonly path: string,
  ) {}

  static async start(script: FakeQmpScript = {}, opts: { listen?: boolean } = {}): Promise<FakeQmpServer> {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-fakeqmp-'));
    const path = join(dir, 'qmp.sock');
    const connections: FakeConnection[] = [];
    const server = createServer((socket) => {
      const conn = new FakeConnection(socket);
      connections.push(conn);
      if (script.greeting !== null) conn.send(script.greeting ?? GREETING);
      let buf = '';
      socket.setEncoding('utf8');
      socket.on('error', () => undefined);
      socket.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const cmd = JSON.parse(line) as ReceivedCommand;
          conn.received.push(cmd);
          if (cmd.execute === 'qmp_capabilities' && script.autoCapabilities !== false) conn.reply(cmd);
          else script.onCommand?.(cmd, conn);
        }
      });
    });
    const fake = new FakeQmpServer(connections, server, dir, path);
    if (opts.listen !== false) await fake.listen();
    return fake;
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  async stop(): Promise<void> {
    for (const c of this.connections) c.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }
}
