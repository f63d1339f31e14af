import { pollUntil } from '@ccm/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  FakeQmpServer,
  type FakeConnection,
  type FakeQmpScript,
  type ReceivedCommand,
} from './__fixtures__/fake-qmp-server.js';
import { QmpClient } from './client.js';
import {
  QmpCommandError,
  QmpCommandTimeoutError,
  QmpConnectTimeoutError,
  QmpEventTimeoutError,
  QmpGreetingError,
  QmpMalformedReplyError,
  QmpSocketClosedError,
} from './errors.js';
import { isEvent, type QmpEvent } from './events.js';

const RUNNING = { running: true, singlestep: false, status: 'running' };

let servers: FakeQmpServer[] = [];
let clients: QmpClient[] = [];
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.stop()));
  servers = [];
  clients = [];
});

async function serve(script: FakeQmpScript = {}): Promise<FakeQmpServer> {
  const s = await FakeQmpServer.start(script);
  servers.push(s);
  return s;
}
async function connect(
  server: FakeQmpServer,
  opts: Parameters<typeof QmpClient.connect>[1] = {},
): Promise<QmpClient> {
  const c = await QmpClient.connect(server.path, {
    connectTimeoutMs: 2_000,
    greetingTimeoutMs: 1_000,
    ...opts,
  });
  clients.push(c);
  return c;
}
/** Serves `query-status` with `answer`, everything else with `{}`. */
const answering =
  (answer: (cmd: ReceivedCommand, conn: FakeConnection) => void) =>
  (cmd: ReceivedCommand, conn: FakeConnection): void =>
    cmd.execute === 'query-status' ? answer(cmd, conn) : conn.reply(cmd);

describe('QmpClient: greeting and negotiation', () => {
  it('reads the greeting, sends qmp_capabilities first and then accepts commands', async () => {
    const server = await serve({ onCommand: answering((cmd, conn) => conn.reply(cmd, RUNNING)) });
    const client = await connect(server);
    expect(client.greeting.version.qemu).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(client.greeting.capabilities).toEqual(['oob']);
    await expect(client.execute('query-status')).resolves.toEqual(RUNNING);
    const sent = server.connections[0].received;
    expect(sent.map((c) => c.execute)).toEqual(['qmp_capabilities', 'query-status']);
    expect(sent[0]).not.toHaveProperty('arguments');
    expect(new Set(sent.map((c) => c.id)).size).toBe(2);
  });

  it('passes requested QMP capabilities to qmp_capabilities', async () => {
    const server = await serve();
    await connect(server, { enable: ['oob'] });
    expect(server.connections[0].received[0]).toMatchObject({
      execute: 'qmp_capabilities',
      arguments: { enable: ['oob'] },
    });
  });

  it('fails negotiation with the QMP error when qmp_capabilities is refused', async () => {
    const server = await serve({
      autoCapabilities: false,
      onCommand: (cmd, conn) => conn.error(cmd, 'GenericError', 'no'),
    });
    await expect(connect(server)).rejects.toBeInstanceOf(QmpCommandError);
  });

  it('retries until the socket appears (QEMU creates it a little after start)', async () => {
    const server = await FakeQmpServer.start({}, { listen: false });
    servers.push(server);
    const late = setTimeout(() => void server.listen(), 300);
    const client = await connect(server, { retryIntervalMs: 20 });
    clearTimeout(late);
    expect(client.isClosed).toBe(false);
  });

  it('gives up with QmpConnectTimeoutError when the socket never appears', async () => {
    const server = await FakeQmpServer.start({}, { listen: false });
    servers.push(server);
    const err = await QmpClient.connect(server.path, { connectTimeoutMs: 200, retryIntervalMs: 20 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QmpConnectTimeoutError);
    expect((err as QmpConnectTimeoutError).attempts).toBeGreaterThan(2);
  });

  it.each([
    ['sends a non-greeting first', { greeting: { return: {} } }, /not a greeting/],
    ['says nothing', { greeting: null }, /nothing received within/],
    ['sends a greeting of the wrong shape', { greeting: { QMP: { version: 7 } } }, /not a greeting/],
  ])('rejects with QmpGreetingError when the peer %s', async (_what, script: FakeQmpScript, message) => {
    const server = await serve(script);
    const err = await QmpClient.connect(server.path, { greetingTimeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpGreetingError);
    expect((err as Error).message).toMatch(message);
  });

  it('rejects with QmpGreetingError when the peer hangs up before greeting', async () => {
    const server = await FakeQmpServer.start({ greeting: null });
    servers.push(server);
    const pending = QmpClient.connect(server.path, { greetingTimeoutMs: 2_000 });
    await pollUntil('the fake server accepted', () => server.connections.length === 1);
    server.connections[0].close();
    await expect(pending).rejects.toThrow(/connection closed before the greeting/);
  });
});

describe('QmpClient: replies and events', () => {
  it('delivers events interleaved with replies, in order, and matches replies by id', async () => {
    const server = await serve({
      onCommand: (cmd, conn) => {
        if (cmd.execute === 'stop') {
          conn.event('STOP');
          conn.reply(cmd);
          conn.event('MIGRATION', { status: 'setup' });
        } else if (cmd.execute === 'query-status') {
          conn.event('RESUME');
          conn.reply(cmd, RUNNING);
        }
      },
    });
    const client = await connect(server);
    const seen: QmpEvent[] = [];
    client.onEvent((e) => seen.push(e));
    await client.execute('stop');
    await expect(client.execute('query-status')).resolves.toMatchObject({ status: 'running' });
    expect(seen.map((e) => e.event)).toEqual(['STOP', 'MIGRATION', 'RESUME']);
    const migration = seen[1];
    expect(isEvent(migration, 'MIGRATION') && migration.data.status).toBe('setup');
    expect(seen[0].data).toEqual({});
  });

  it('resolves concurrent commands by id even when replies come back out of order', async () => {
    const held: ReceivedCommand[] = [];
    const server = await serve({
      onCommand: (cmd, conn) => {
        held.push(cmd);
        if (held.length === 2) {
          conn.reply(held[1], { running: false, status: 'paused' });
          conn.reply(held[0], RUNNING);
        }
      },
    });
    const client = await connect(server);
    const [a, b] = await Promise.all([client.execute('query-status'), client.execute('query-status')]);
    expect([a.status, b.status]).toEqual(['running', 'paused']);
  });

  it('parses messages split across chunks and several messages in one chunk', async () => {
    const server = await serve({
      onCommand: (cmd, conn) => {
        const reply = JSON.stringify({ return: RUNNING, id: cmd.id });
        const ev = JSON.stringify({ event: 'RESUME', timestamp: { seconds: 1, microseconds: 2 } });
        conn.send(`${ev}\r\n${reply.slice(0, 10)}`);
        setTimeout(() => conn.send(`${reply.slice(10)}\r\n`), 20);
      },
    });
    const client = await connect(server);
    const resumed = client.waitForEvent('RESUME', { timeoutMs: 1_000 });
    await expect(client.execute('query-status')).resolves.toMatchObject({ running: true });
    await expect(resumed).resolves.toMatchObject({ timestamp: { seconds: 1, microseconds: 2 } });
  });

  it('turns a QMP error reply into QmpCommandError with class and desc', async () => {
    const server = await serve({
      onCommand: (cmd, conn) => conn.error(cmd, 'DeviceNotActive', 'No migration in progress'),
    });
    const client = await connect(server);
    const err = await client.execute('migrate_cancel').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({
      command: 'migrate_cancel',
      errorClass: 'DeviceNotActive',
      desc: 'No migration in progress',
    });
    expect(client.isClosed).toBe(false);
  });

  it('sends arguments and returns an unchecked reply for commands CCM has no type for', async () => {
    const server = await serve({ onCommand: (cmd, conn) => conn.reply(cmd, [{ name: 'x' }]) });
    const client = await connect(server);
    await expect(client.executeUnchecked('qom-list', { path: '/' })).resolves.toEqual([{ name: 'x' }]);
    expect(server.connections[0].received[1]).toMatchObject({
      execute: 'qom-list',
      arguments: { path: '/' },
    });
  });
});

describe('QmpClient: failures', () => {
  it.each([
    [
      'malformed JSON',
      (_cmd: ReceivedCommand, c: FakeConnection) => c.send('{"return": {}, "id": \r\n'),
      'bad-json',
    ],
    [
      'JSON that is not an object',
      (_cmd: ReceivedCommand, c: FakeConnection) => c.send('[1,2]\r\n'),
      'bad-json',
    ],
    [
      'a reply with neither return nor error',
      (cmd: ReceivedCommand, c: FakeConnection) => c.send({ id: cmd.id }),
      'no-return-or-error',
    ],
    [
      'a reply with an unknown id',
      (_cmd: ReceivedCommand, c: FakeConnection) => c.send({ return: {}, id: 9999 }),
      'unexpected-id',
    ],
    [
      'an error reply without id',
      (_cmd: ReceivedCommand, c: FakeConnection) => c.send({ error: { class: 'GenericError', desc: 'x' } }),
      'unexpected-id',
    ],
    [
      'a known event with wrong data',
      (_cmd: ReceivedCommand, c: FakeConnection) => c.event('MIGRATION', { status: 42 }),
      'bad-shape',
    ],
  ])(
    'on %s: fails the waiting command with QmpMalformedReplyError and closes',
    async (_what, misbehave, reason) => {
      const server = await serve({ onCommand: misbehave });
      const client = await connect(server);
      const err = await client.execute('query-status').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QmpMalformedReplyError);
      expect((err as QmpMalformedReplyError).reason).toBe(reason);
      await expect(client.closed).resolves.toBe(err);
      const after = await client.execute('query-status').catch((e: unknown) => e);
      expect(after).toBeInstanceOf(QmpSocketClosedError);
      expect((after as Error).cause).toBe(err);
    },
  );

  it('fails only the command whose return has the wrong shape, keeping the connection', async () => {
    let n = 0;
    const server = await serve({
      onCommand: (cmd, conn) => conn.reply(cmd, n++ === 0 ? { running: 'yes', status: 'banana' } : RUNNING),
    });
    const client = await connect(server);
    const err = await client.execute('query-status').catch((e: unknown) => e);
    expect(err).toMatchObject({ reason: 'bad-shape', command: 'query-status' });
    await expect(client.execute('query-status')).resolves.toEqual(RUNNING);
  });

  it('fails a command with QmpSocketClosedError when the socket closes mid-command', async () => {
    const server = await serve({ onCommand: (_cmd, conn) => conn.close() });
    const client = await connect(server);
    const err = await client.execute('migrate', { uri: 'tcp:127.0.0.1:1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpSocketClosedError);
    expect(err).toMatchObject({ command: 'migrate', retryable: true });
    expect((err as Error).message).toMatch(/peer closed the connection/);
    expect(client.isClosed).toBe(true);
  });

  it('times a command out, drops its late reply by id and keeps working', async () => {
    let late: ReceivedCommand | undefined;
    const server = await serve({
      onCommand: (cmd, conn) => {
        if (!late)
          late = cmd; // left unanswered until after the timeout
        else conn.reply(cmd, { running: false, status: 'paused' });
      },
    });
    const client = await connect(server);
    const err = await client.execute('query-status', undefined, { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandTimeoutError);
    expect(err).toMatchObject({ command: 'query-status', timeoutMs: 50 });
    server.connections[0].reply(late!, RUNNING);
    // QEMU answers in order, so the late reply is read before the next command's: it must be dropped.
    await expect(client.execute('query-status')).resolves.toMatchObject({ status: 'paused' });
    expect(client.isClosed).toBe(false);
  });

  it('rejects waitForEvent with QmpEventTimeoutError, and with QmpSocketClosedError on close', async () => {
    const server = await serve();
    const client = await connect(server);
    await expect(client.waitForEvent('SHUTDOWN', { timeoutMs: 30 })).rejects.toBeInstanceOf(
      QmpEventTimeoutError,
    );
    const waiting = client.waitForEvent('SHUTDOWN');
    server.connections[0].close();
    await expect(waiting).rejects.toBeInstanceOf(QmpSocketClosedError);
  });
});

describe('QmpClient: event stream', () => {
  it('iterates events (filtered by name), delivers buffered ones and ends when the connection closes', async () => {
    const server = await serve({
      onCommand: (cmd, conn) => {
        conn.event('MIGRATION', { status: 'active' });
        conn.event('MIGRATION_PASS', { pass: 1 });
        conn.event('VSERPORT_CHANGE', { id: 'x', open: true });
        conn.event('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
        conn.reply(cmd);
        conn.close();
      },
    });
    const client = await connect(server);
    const all = client.events();
    const some = client.events({ names: ['SHUTDOWN', 'VSERPORT_CHANGE'] });
    await client.execute('quit');
    const names: string[] = [];
    for await (const e of all) names.push(e.event);
    expect(names).toEqual(['MIGRATION', 'MIGRATION_PASS', 'VSERPORT_CHANGE', 'SHUTDOWN']);
    const filtered: QmpEvent[] = [];
    for await (const e of some) filtered.push(e);
    expect(filtered.map((e) => e.event)).toEqual(['VSERPORT_CHANGE', 'SHUTDOWN']);
    expect(filtered[0].data).toEqual({ id: 'x', open: true });
  });

  it('stops on break and on abort', async () => {
    const server = await serve({
      onCommand: (cmd, conn) => (conn.event('STOP'), conn.event('RESUME'), conn.reply(cmd)),
    });
    const client = await connect(server);
    const stream = client.events();
    await client.execute('stop');
    for await (const e of stream) {
      expect(e.event).toBe('STOP');
      break;
    }
    await expect(stream.next()).resolves.toMatchObject({ done: true });
    const ac = new AbortController();
    const aborted = client.events({ signal: ac.signal });
    const next = aborted.next();
    ac.abort();
    await expect(next).resolves.toMatchObject({ done: true });
  });
});

describe('QmpClient: typed commands', () => {
  it('types arguments and replies per command (checked by tsc; never executed)', () => {
    const typed = async (c: QmpClient): Promise<void> => {
      const st = await c.execute('query-status');
      const running: boolean = st.running;
      const info = await c.execute('query-migrate');
      const xfer: number | undefined = info.ram?.transferred;
      const hmp: string = await c.execute('human-monitor-command', { 'command-line': 'info registers' });
      await c.execute('migrate-set-parameters', { 'downtime-limit': 300 }, { timeoutMs: 1_000 });
      // @ts-expect-error migrate needs its uri
      await c.execute('migrate');
      // @ts-expect-error query-status takes no arguments
      await c.execute('query-status', { verbose: true });
      // @ts-expect-error not a command CCM has a type for: use executeUnchecked
      await c.execute('qom-list', { path: '/' });
      void [running, xfer, hmp];
    };
    expect(typed).toBeTypeOf('function');
  });
});
