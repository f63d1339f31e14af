import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MessagingMetrics } from './metrics.js';

/** The `ccm_handlers_in_flight` samples as `subject migration → value`. */
async function inFlight(registry: Registry): Promise<Record<string, number>> {
  const metric = registry.getSingleMetric('ccm_handlers_in_flight')!;
  const { values } = await metric.get();
  return Object.fromEntries(values.map((v) => [`${v.labels.subject} ${v.labels.migration}`, v.value]));
}

/** A handler that runs until `finish()` (or fails on `fail()`). */
function pending() {
  let finish!: (v: string) => void;
  let fail!: (e: Error) => void;
  const done = new Promise<string>((res, rej) => ((finish = res), (fail = rej)));
  return { run: () => done, finish, fail };
}

describe('handlers in flight (ccm_handlers_in_flight)', () => {
  it('counts each running handler under its subject and migration, and drops a label set at zero', async () => {
    const registry = new Registry();
    const { inFlight: tracker } = new MessagingMetrics(registry);
    const [a, b, c] = [pending(), pending(), pending()];
    const ta = tracker.track({ subject: 'ccm.cmd.key-broker.attest-platform', migration: 'm1' }, a.run);
    const tb = tracker.track({ subject: 'ccm.cmd.key-broker.attest-platform', migration: 'm1' }, b.run);
    const tc = tracker.track({ subject: 'ccm.cmd.vm-lifecycle.provision-vm', migration: 'm2' }, c.run);
    expect(await inFlight(registry)).toEqual({
      'ccm.cmd.key-broker.attest-platform m1': 2,
      'ccm.cmd.vm-lifecycle.provision-vm m2': 1,
    });

    a.finish('a');
    expect(await ta).toBe('a');
    expect(await inFlight(registry)).toEqual({
      'ccm.cmd.key-broker.attest-platform m1': 1,
      'ccm.cmd.vm-lifecycle.provision-vm m2': 1,
    });

    // A failed handler leaves the count too, and its error reaches the caller.
    b.fail(new Error('refused'));
    await expect(tb).rejects.toThrow('refused');
    expect(await inFlight(registry)).toEqual({ 'ccm.cmd.vm-lifecycle.provision-vm m2': 1 });

    c.finish('c');
    await tc;
    expect(await inFlight(registry)).toEqual({});
    expect(await registry.getSingleMetricAsString('ccm_handlers_in_flight')).not.toContain('ccm.cmd');
  });

  it('counts a message without a correlationid under an empty migration', async () => {
    const registry = new Registry();
    const { inFlight: tracker } = new MessagingMetrics(registry);
    const p = pending();
    const t = tracker.track({ subject: 'ccm.query.vm-lifecycle.hosts' }, p.run);
    expect(await inFlight(registry)).toEqual({ 'ccm.query.vm-lifecycle.hosts ': 1 });
    p.finish('x');
    await t;
    expect(await inFlight(registry)).toEqual({});
  });
});
