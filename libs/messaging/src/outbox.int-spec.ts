import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { STREAMS, subjects } from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { openDataSource } from '@ccm/persistence';
import { pollUntil, startTestStack, type TestStack } from '@ccm/testing';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEvents } from './audit/verify.js';
import { type StoredEvent } from './audit/types.js';
import { publisherName } from './chain.js';
import { Outbox, OutboxRelay } from './outbox.js';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..');

describe('outbox relay (real Postgres and JetStream)', () => {
  let stack: TestStack;
  let ds: DataSource;
  let jsm: JetStreamManager;
  let outbox: Outbox;
  const schema = 'saga_coordinator';

  beforeAll(async () => {
    stack = await startTestStack({ hostIds: ['ha', 'hb'] });
    ds = await openDataSource({ url: stack.postgres.url, schema });
    // The auditor's view of the stream: only the operator may read its messages.
    jsm = await jetstreamManager(await stack.connectAs('operator'));
    outbox = new Outbox(await stack.identity('saga-coordinator'), schema);
  });
  afterAll(async () => {
    await ds?.destroy();
    await stack?.stop();
  });

  const countInStream = async (subject: string): Promise<number> => {
    const info = await jsm.streams.info(STREAMS.events.name, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  };

  it('puts an event in JetStream exactly once when the relay is killed -9 between publish and mark-sent', async () => {
    const subject = subjects.evt('migration', 'm-crash', 'started');
    await ds.transaction((m) =>
      outbox.enqueue(m, subject, { type: 'ccm.migration.started', data: { id: 'm-crash' } }),
    );

    // A relay process that SIGKILLs itself right after publishing, before its transaction commits.
    const crash = spawnSync(
      process.execPath,
      [
        join(REPO_ROOT, 'dist/tools/test/relay-crash.js'),
        stack.nats.url,
        stack.keysDir,
        stack.postgres.url,
        schema,
      ],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(crash.signal).toBe('SIGKILL');
    // Published once, but the row is still unsent: the crash lost the mark.
    expect(await countInStream(subject)).toBe(1);
    const unsent = await ds.query<Array<{ c: number }>>(
      `SELECT count(*)::int AS c FROM ${schema}.outbox WHERE sent_at IS NULL`,
    );
    expect(unsent[0].c).toBe(1);

    const nc = await stack.connectAs('saga-coordinator');
    const restarted = new OutboxRelay(ds, jetstream(nc), schema, { pollMs: 50 });
    restarted.start();
    await pollUntil('outbox drained', async () => {
      const rows = await ds.query<Array<{ c: number }>>(
        `SELECT count(*)::int AS c FROM ${schema}.outbox WHERE sent_at IS NULL`,
      );
      return rows[0].c === 0;
    });
    await restarted.stop();
    expect(await countInStream(subject)).toBe(1);
  });

  it('shares the backlog between two relays without publishing anything twice', async () => {
    const n = 60;
    await ds.transaction(async (m) => {
      for (let i = 0; i < n; i++) {
        await outbox.enqueue(m, subjects.evt('migration', `m-${i}`, 'queued'), {
          type: 'ccm.migration.queued',
          data: { i },
        });
      }
    });
    const [a, b] = await Promise.all([
      stack.connectAs('saga-coordinator'),
      stack.connectAs('saga-coordinator'),
    ]);
    const published: string[] = [];
    const mk = (nc: typeof a) =>
      new OutboxRelay(ds, jetstream(nc), schema, {
        pollMs: 20,
        batchSize: 7,
        afterPublish: (id) => void published.push(id),
      });
    const relays = [mk(a), mk(b)];
    relays.forEach((r) => r.start());
    await pollUntil('backlog relayed', async () => {
      const rows = await ds.query<Array<{ c: number }>>(
        `SELECT count(*)::int AS c FROM ${schema}.outbox WHERE sent_at IS NULL`,
      );
      return rows[0].c === 0;
    });
    await Promise.all(relays.map((r) => r.stop()));
    expect(new Set(published).size).toBe(n);
    expect(published).toHaveLength(n);
  });

  it('extends one chain per migration from concurrent writers and relays it in chain order', async () => {
    const vm = await stack.identity('vm-lifecycle');
    const writers = [new Outbox(vm, schema), new Outbox(vm, schema)];
    const migrations = ['mig-chain-a', 'mig-chain-b', 'mig-chain-c'];
    const n = 60;
    const [a, b] = await Promise.all([stack.connectAs('vm-lifecycle'), stack.connectAs('vm-lifecycle')]);
    const relays = [a, b].map(
      (nc) => new OutboxRelay(ds, jetstream(nc), schema, { pollMs: 10, batchSize: 5 }),
    );
    relays.forEach((r) => r.start());
    // Two writers race on the same chains in separate transactions while two relays publish.
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        ds.transaction((m) =>
          writers[i % 2].enqueue(m, subjects.evt('vm', `v${i}`, 'probed'), {
            type: 'ccm.vm.probed',
            correlationid: migrations[i % 3],
            data: { i },
          }),
        ),
      ),
    );
    await pollUntil('chains relayed', async () => {
      const rows = await ds.query<Array<{ c: number }>>(
        `SELECT count(*)::int AS c FROM ${schema}.outbox WHERE sent_at IS NULL`,
      );
      return rows[0].c === 0;
    });
    await Promise.all(relays.map((r) => r.stop()));
    const info = await jsm.streams.info(STREAMS.events.name);
    const stored: StoredEvent[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.events.name, { seq });
      if (m) stored.push({ streamSeq: m.seq, subject: m.subject, data: m.data });
    }
    const records = auditEvents(stored, { trust: await loadTrustStore(stack.keysDir) });
    for (const id of migrations) {
      const r = records.get(id)!;
      expect(r.findings).toEqual([]);
      expect(r.chains).toMatchObject([{ publisher: 'vm-lifecycle', firstSeq: 1, lastSeq: n / 3 }]);
    }
  });

  it('host-agents of two hosts sharing a schema each relay only their own rows (each may publish only its host)', async () => {
    // Regression: host a's relay took host b's row, was refused by NATS, and failed every pass, so
    // neither host's events reached the stream.
    const hostSchema = 'host_agent';
    const hds = await openDataSource({ url: stack.postgres.url, schema: hostSchema });
    try {
      const hosts = ['ha', 'hb'] as const;
      const relays = await Promise.all(
        hosts.map(async (h) => {
          const id = await stack.identity('host-agent', h);
          const nc = await stack.connectAs('host-agent', h);
          return {
            h,
            outbox: new Outbox(id, hostSchema, () => undefined, publisherName('host-agent', h)),
            relay: new OutboxRelay(hds, jetstream(nc), hostSchema, {
              pollMs: 10,
              publisher: publisherName('host-agent', h),
            }),
          };
        }),
      );
      for (const { h, outbox: o } of relays) {
        await hds.transaction((m) =>
          o.enqueue(m, `ccm.evt.host.${h}.registered`, { type: 'ccm.host.registered', data: { hostId: h } }),
        );
      }
      relays.forEach((r) => r.relay.start());
      await pollUntil('both hosts relayed', async () => {
        const rows = await hds.query<Array<{ c: number }>>(
          `SELECT count(*)::int AS c FROM ${hostSchema}.outbox WHERE sent_at IS NULL`,
        );
        return rows[0].c === 0;
      });
      await Promise.all(relays.map((r) => r.relay.stop()));
      for (const h of hosts) expect(await countInStream(`ccm.evt.host.${h}.registered`)).toBe(1);
    } finally {
      await hds.destroy();
    }
  });
});
