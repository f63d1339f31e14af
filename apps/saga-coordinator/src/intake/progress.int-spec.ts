import { sealEnvelope } from '@ccm/messaging';
import { describe, expect, it } from 'vitest';
import { coordinatorWorld, migrationHeldAtPreCopy, preDumpRound } from '../testing/world.js';
import { ProgressConsumers } from './progress.consumers.js';
import { settled } from '@ccm/testing';

/**
 * Data-plane progress never goes back. A report handled after a newer one (another replica took the
 * newer, or the older was redelivered) is dropped by its stream sequence, against the real database.
 */
describe('progress reports handled out of stream order', () => {
  const w = coordinatorWorld();

  it('keep the newest: an older report changes neither the progress nor the events', async () => {
    const { id, release } = await migrationHeldAtPreCopy(w, 'out-of-order');
    const consumers = w.app.get(ProgressConsumers);
    const checkpoint = await w.stack.identity('container-checkpoint');
    const report = (round: number, streamSeq: number) => {
      const data = preDumpRound(id, round);
      const subject = `ccm.evt.checkpoint.${id}.progressed`;
      const envelope = sealEnvelope(checkpoint, {
        natssubject: subject,
        type: 'ccm.checkpoint.progressed',
        data,
      });
      return consumers.checkpoint(data, {
        subject,
        envelope,
        deliveryCount: 1,
        streamSeq,
      });
    };

    expect(await report(2, 1002)).toEqual({ kind: 'ack' });
    expect(await report(1, 1001)).toEqual({ kind: 'ack' });
    expect((await w.operator.find(id))?.progress).toMatchObject({ round: 2, bytesTransferred: 2000 });
    expect(await report(3, 1003)).toEqual({ kind: 'ack' });
    expect((await w.operator.find(id))?.progress).toMatchObject({ round: 3 });

    release();
    const { events } = await settled(w.operator, id);
    const rounds = events
      .filter((e) => e.name === 'progressed')
      .map((e) => (e.data['progress'] as { round: number }).round);
    expect(rounds).toEqual([2, 3]);
  });
});
