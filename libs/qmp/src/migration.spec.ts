import { afterEach, describe, expect, it } from 'vitest';
import { FakeQmpServer, type FakeConnection, type ReceivedCommand } from './__fixtures__/fake-qmp-server.js';
import { QmpClient } from './client.js';
import { QmpMigrationError } from './errors.js';
import { driveMigration, migrationFigures } from './migration.js';

const RAM = {
  transferred: 134_000_000,
  remaining: 0,
  total: 537_000_000,
  duplicate: 100_000,
  normal: 32_000,
  'normal-bytes': 131_000_000,
  'dirty-pages-rate': 0,
  mbps: 2254.1,
  'dirty-sync-count': 3,
};

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** A fake source QEMU whose query-migrate walks through `answers` (the last one repeats). */
async function fakeSource(
  answers: object[],
  opts: { statuses?: string[]; onMigrate?: (conn: FakeConnection) => void } = {},
): Promise<{ client: QmpClient; sent: ReceivedCommand[] }> {
  let q = 0;
  let s = 0;
  const statuses = opts.statuses ?? ['postmigrate'];
  const server = await FakeQmpServer.start({
    onCommand: (cmd, conn) => {
      if (cmd.execute === 'query-migrate') conn.reply(cmd, answers[Math.min(q++, answers.length - 1)]);
      else if (cmd.execute === 'query-status') {
        const status = statuses[Math.min(s++, statuses.length - 1)];
        conn.reply(cmd, { running: status === 'running', status });
      } else {
        conn.reply(cmd);
        if (cmd.execute === 'migrate') opts.onMigrate?.(conn);
      }
    },
  });
  const client = await QmpClient.connect(server.path);
  cleanup.push(
    () => server.stop(),
    () => client.close(),
  );
  return { client, sent: server.connections[0].received };
}

describe('driveMigration', () => {
  it('configures both ends, migrates, and re-reads the figures once the source is postmigrate', async () => {
    const src = await fakeSource(
      [
        { status: 'setup' },
        { status: 'active', 'total-time': 10, ram: { ...RAM, transferred: 10 } },
        { status: 'completed', 'total-time': 0, downtime: 0, ram: RAM }, // QEMU 7.2's early read
        { status: 'completed', 'total-time': 482, downtime: 13, 'setup-time': 2, ram: RAM },
      ],
      {
        statuses: ['finish-migrate', 'postmigrate'],
        onMigrate: (conn) => {
          conn.event('MIGRATION', { status: 'setup' });
          conn.event('MIGRATION_PASS', { pass: 1 });
        },
      },
    );
    const dst = await fakeSource([{}]);
    const progress: string[] = [];
    const out = await driveMigration(
      src.client,
      {
        uri: 'tcp:127.0.0.1:4444',
        downtimeLimitMs: 300,
        maxBandwidthBytesPerSec: 1 << 30,
        capabilities: { 'auto-converge': true },
        destination: dst.client,
      },
      { pollIntervalMs: 1, onProgress: (i) => progress.push(i.status ?? 'none') },
    );
    expect(src.sent.slice(1).map((c) => [c.execute, c.arguments])).toEqual([
      ['migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }, { capability: 'events', state: true }] }],
      ['migrate-set-parameters', { 'downtime-limit': 300, 'max-bandwidth': 1 << 30 }],
      ['migrate', { uri: 'tcp:127.0.0.1:4444' }],
      ['query-migrate', undefined],
      ['query-migrate', undefined],
      ['query-migrate', undefined],
      ['query-status', undefined],
      ['query-status', undefined],
      ['query-migrate', undefined],
    ]); // prettier-ignore
    expect(dst.sent[1]).toMatchObject({
      execute: 'migrate-set-capabilities',
      arguments: { capabilities: [{ capability: 'events', state: true }] },
    });
    expect(progress).toEqual(['setup', 'active', 'completed']);
    expect(out.figures).toEqual({
      status: 'completed',
      totalTimeMs: 482,
      downtimeMs: 13,
      setupTimeMs: 2,
      transferredBytes: 134_000_000,
      remainingBytes: 0,
      passes: 3,
      mbps: 2254.1,
    });
    expect(out.events.map((e) => [e.side, e.event.event])).toEqual([
      ['source', 'MIGRATION'],
      ['source', 'MIGRATION_PASS'],
    ]);
  });

  it('throws QmpMigrationError with QEMU error-desc when the migration fails', async () => {
    const src = await fakeSource([{ status: 'failed', 'error-desc': 'Connection refused' }]);
    const err = await driveMigration(src.client, { uri: 'tcp:127.0.0.1:1' }, { pollIntervalMs: 1 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QmpMigrationError);
    expect(err).toMatchObject({ status: 'failed', errorDesc: 'Connection refused' });
    expect(src.sent.map((c) => c.execute)).not.toContain('migrate-set-parameters');
  });

  it('gives up with QmpMigrationError when the migration never finishes', async () => {
    const src = await fakeSource([{ status: 'active', ram: RAM }]);
    const err = await driveMigration(src.client, { uri: 'x' }, { pollIntervalMs: 5, timeoutMs: 30 }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ status: 'active', errorDesc: expect.stringMatching(/within 30 ms/) });
  });
});

describe('migrationFigures', () => {
  it('reads missing fields as 0 (query-migrate before any migration)', () => {
    expect(migrationFigures({})).toMatchObject({
      status: 'none',
      totalTimeMs: 0,
      transferredBytes: 0,
      passes: 0,
    });
  });
});
