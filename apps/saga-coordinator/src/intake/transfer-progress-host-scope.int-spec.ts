import { inboxPrefix, STREAMS, type DataPlaneProgress } from '@ccm/contracts';
import { encodeEnvelope, HandlerRegistry, sealEnvelope } from '@ccm/messaging';
import { pollUntil, RawNatsClient } from '@ccm/testing';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { coordinatorWorld, migrationHeldAtPreCopy } from '../testing/world.js';

const HOSTS = ['host-a', 'host-b', 'host-c'];
const report = (migrationId: string, bytes: number): DataPlaneProgress => ({
  migrationId,
  step: 'pre-copy',
  stage: 'active',
  bytesTransferred: bytes,
  bytesTotal: 10_000,
  at: new Date().toISOString(),
});

/**
 * Regressions of issue 8: host-agent@a published progress into a migration between two other hosts
 * (it was stored), published another host's events, and 1000 unsigned reports stalled the
 * `progress-transfer` consumer for good because a parked message was never terminated.
 */
describe('transfer progress is taken only from the migration’s own hosts', () => {
  const w = coordinatorWorld({}, undefined, { hostIds: HOSTS });
  const publishAs = async (host: string, subject: string, data: DataPlaneProgress) => {
    const id = await w.stack.identity('host-agent', host);
    const env = sealEnvelope(id, {
      natssubject: subject,
      type: 'ccm.transfer.progressed',
      data,
      correlationid: data.migrationId,
    });
    const nc = await w.stack.connectAs('host-agent', host);
    await jetstream(nc).publish(subject, encodeEnvelope(env), { msgID: env.id });
  };

  it('a host-agent of a third host cannot put progress into a migration between two others', async () => {
    const { id, release } = await migrationHeldAtPreCopy(w, 'third-host');
    const subject = `ccm.evt.transfer.${id}.progressed`;
    await publishAs('host-c', subject, report(id, 666));
    const parked = await pollUntil('the forged report parked', async () =>
      (await w.operator.deadLetters()).find((d) => d.original === subject),
    );
    expect(parked.subject).toBe('ccm.dlq.saga-coordinator.progress-transfer');
    expect(parked.reason).toMatch(/UNAUTHORIZED.*host-c/);
    // The target host's own report is taken, and the forged one left no trace in the progress.
    await publishAs('host-b', subject, report(id, 4000));
    await pollUntil('host-b’s report forwarded', async () => (await w.operator.find(id))?.progress, Boolean);
    expect((await w.operator.find(id))?.progress).toMatchObject({ bytesTransferred: 4000 });
    expect(w.operator.eventsOf(id, 'progressed').some((e) => JSON.stringify(e.data).includes('666'))).toBe(
      false,
    );
    release();
  });

  it('a host-agent cannot publish another host’s events', async () => {
    const seed = (await w.stack.identity('host-agent', 'host-a')).natsSeed;
    const c = await RawNatsClient.connect({
      port: w.stack.nats.port,
      seed,
      inboxPrefix: inboxPrefix('host-agent'),
    });
    try {
      expect(await c.publishChecked('ccm.evt.host.host-b.registered', '{}')).toMatchObject({
        ok: false,
        error: expect.stringMatching(/Permissions Violation for Publish/),
      });
      expect(await c.publishChecked('ccm.evt.host.host-a.registered', '{}')).toEqual({ ok: true });
    } finally {
      c.close();
    }
  });

  it('1000 unsigned reports are parked for good and do not stall the consumer', async () => {
    const { id, release } = await migrationHeldAtPreCopy(w, 'flooded');
    const subject = `ccm.evt.transfer.${id}.progressed`;
    const nc = await w.stack.connectAs('host-agent', 'host-a');
    const js = jetstream(nc);
    const POISON = 1100;
    await Promise.all(Array.from({ length: POISON }, (_, i) => js.publish(subject, `unsigned ${i}`)));
    await publishAs('host-a', subject, report(id, 7000));
    await pollUntil(
      'the valid report forwarded',
      async () => (await w.operator.find(id))?.progress,
      Boolean,
      {
        timeoutMs: 60_000,
      },
    );
    expect((await w.operator.find(id))?.progress).toMatchObject({ bytesTransferred: 7000 });
    // Parked messages are terminated: nothing stays pending on the consumer, so it never stalls.
    const jsm = await jetstreamManager(await w.stack.connectAs('bootstrap'));
    const info = await pollUntil(
      'no unacknowledged messages left',
      () => jsm.consumers.info(STREAMS.events.name, 'progress-transfer'),
      (i) => i.num_ack_pending === 0,
    );
    expect(info.num_redelivered).toBe(0);
    const health = await w.app.get(HandlerRegistry).consumerHealth();
    expect(health.find((h) => h.durable === 'progress-transfer')).toMatchObject({
      lost: false,
      stalled: false,
    });
    release();
  });
});
