import { startTestStack, type TestStack } from '@ccm/testing';
import { errors, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** Waits for the server's asynchronous permission error on a connection. */
async function nextPermissionError(
  nc: NatsConnection,
  timeoutMs = 5_000,
): Promise<InstanceType<typeof errors.PermissionViolationError>> {
  const deadline = setTimeout(() => undefined, timeoutMs);
  try {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) return s.error;
    }
  } finally {
    clearTimeout(deadline);
  }
  throw new Error('connection closed without a permission error');
}

describe('NATS permissions per identity (enforced by the server)', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ postgres: false, hostIds: ['host-a', 'h1', 'h2'] });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('refuses a service publishing events of an aggregate it does not own', async () => {
    const nc = await stack.connectAs('network-overlay');
    const refused = nextPermissionError(nc);
    nc.publish('ccm.evt.migration.m1.completed', 'forged');
    const err = await refused;
    expect(err.operation).toBe('publish');
    expect(err.subject).toBe('ccm.evt.migration.m1.completed');
  });

  it('refuses a host-agent subscribing to the key-broker commands', async () => {
    const nc = await stack.connectAs('host-agent', 'host-a');
    const sub = nc.subscribe('ccm.cmd.key-broker.>');
    const err = await sub.closed;
    expect(err).toBeInstanceOf(errors.PermissionViolationError);
    expect((err as InstanceType<typeof errors.PermissionViolationError>).operation).toBe('subscription');
  });

  it('refuses a host-agent taking another host’s commands, and allows its own', async () => {
    const nc = await stack.connectAs('host-agent', 'host-a');
    const own = nc.subscribe('ccm.cmd.host.host-a.>');
    const other = nc.subscribe('ccm.cmd.host.host-b.>');
    expect(await other.closed).toBeInstanceOf(errors.PermissionViolationError);
    await nc.flush();
    expect(own.isClosed()).toBe(false);
  });

  it('pins each host’s own host-agent identity to that host', async () => {
    const h1 = await stack.connectAs('host-agent', 'h1');
    const own = h1.subscribe('ccm.cmd.host.h1.>');
    const other = h1.subscribe('ccm.cmd.host.h2.>');
    expect(await other.closed).toBeInstanceOf(errors.PermissionViolationError);
    await h1.flush();
    expect(own.isClosed()).toBe(false);
    const [a, b] = await Promise.all([
      stack.identity('host-agent', 'h1'),
      stack.identity('host-agent', 'h2'),
    ]);
    expect(a.keyId).not.toBe(b.keyId);
  });

  it('refuses snooping on another identity’s replies', async () => {
    const nc = await stack.connectAs('vm-lifecycle');
    const sub = nc.subscribe('_INBOX_key_broker.>');
    expect(await sub.closed).toBeInstanceOf(errors.PermissionViolationError);
  });

  it('allows what an identity is granted', async () => {
    const nc = await stack.connectAs('network-overlay');
    nc.publish('ccm.evt.overlay.o1.peer-added', 'ok');
    await nc.flush();
    expect(nc.isClosed()).toBe(false);
  });
});
