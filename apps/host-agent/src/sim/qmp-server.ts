import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';

/** A QMP error reply: QEMU's error class and description. */
export class QmpServerError extends Error {
  constructor(
    readonly errorClass: string,
    message: string,
  ) {
    super(message);
  }
}

export type QmpHandler = (args: Record<string, unknown>) => unknown;

/** Version the simulated hypervisor announces (QEMU's numbering, with a package naming the simulator). */
const GREETING = {
  QMP: {
    version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'ccm-sim-hypervisor' },
    capabilities: [],
  },
};

/**
 * The QMP side of the simulated hypervisor: QEMU's wire protocol on a unix socket (greeting,
 * capability negotiation, commands matched by id, events to every negotiated client), so the agent
 * drives simulated and real VMs with the same client.
 */
export class QmpServer {
  private readonly server: Server;
  private readonly clients = new Set<Socket>();
  private readonly ready = new WeakSet<Socket>();

  constructor(
    readonly path: string,
    private readonly handlers: ReadonlyMap<string, QmpHandler>,
  ) {
    this.server = createServer((sock) => this.accept(sock));
  }

  listen(): Promise<void> {
    rmSync(this.path, { force: true });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, () => resolve());
    });
  }

  emit(event: string, data?: Record<string, unknown>): void {
    const now = Date.now();
    const line = `${JSON.stringify({
      event,
      ...(data ? { data } : {}),
      timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
    })}\n`;
    for (const c of this.clients) if (this.ready.has(c)) c.write(line);
  }

  close(): void {
    for (const c of this.clients) c.destroy();
    this.server.close();
  }

  private accept(sock: Socket): void {
    this.clients.add(sock);
    sock.on('close', () => this.clients.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setEncoding('utf8');
    sock.write(`${JSON.stringify(GREETING)}\n`);
    let pending = '';
    sock.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (line) void this.onLine(sock, line);
      }
    });
  }

  private async onLine(sock: Socket, line: string): Promise<void> {
    let msg: { execute?: unknown; arguments?: unknown; id?: unknown };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      sock.write(`${JSON.stringify({ error: { class: 'GenericError', desc: 'JSON parse error' } })}\n`);
      return;
    }
    const id = msg.id === undefined ? {} : { id: msg.id };
    const reply = (body: object): void => {
      if (!sock.destroyed) sock.write(`${JSON.stringify({ ...body, ...id })}\n`);
    };
    const command = typeof msg.execute === 'string' ? msg.execute : '';
    if (!this.ready.has(sock) && command !== 'qmp_capabilities') {
      reply({
        error: {
          class: 'CommandNotFound',
          desc: "Expecting capabilities negotiation with 'qmp_capabilities'",
        },
      });
      return;
    }
    if (command === 'qmp_capabilities') {
      this.ready.add(sock);
      reply({ return: {} });
      return;
    }
    const handler = this.handlers.get(command);
    if (!handler) {
      reply({ error: { class: 'CommandNotFound', desc: `The command ${command} has not been found` } });
      return;
    }
    try {
      const args = (msg.arguments ?? {}) as Record<string, unknown>;
      const result = await handler(args);
      reply({ return: result ?? {} });
    } catch (err) {
      const cls = err instanceof QmpServerError ? err.errorClass : 'GenericError';
      reply({ error: { class: cls, desc: (err as Error).message } });
    }
  }
}
