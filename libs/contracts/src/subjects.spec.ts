import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical.js';
import { CcmError, ErrorCodes, validationError } from './errors.js';
import { DURABLE_CONSUMERS, hostAgentConsumers } from './consumers.js';
import { natsPermissionsFor } from './permissions.js';
import { BOOTSTRAP, SERVICES } from './services.js';
import { InvalidSubjectTokenError, inboxPrefix, subjects } from './subjects.js';

describe('subject builders', () => {
  it.each([
    [subjects.cmd('key-broker', 'ping'), 'ccm.cmd.key-broker.ping'],
    [subjects.hostCmd('host-a', 'launch'), 'ccm.cmd.host.host-a.launch'],
    [subjects.guestCmd('vm-1', 'dump'), 'ccm.cmd.guest.vm-1.dump'],
    [subjects.evt('migration', 'm1', 'started'), 'ccm.evt.migration.m1.started'],
    [subjects.req('migrate'), 'ccm.req.migrate'],
    [subjects.dlq('saga-coordinator', 'intake'), 'ccm.dlq.saga-coordinator.intake'],
  ])('%s', (built, expected) => expect(built).toBe(expected));

  it.each(['a.b', '*', '>', '', 'a b'])('refuses the token %j', (bad) => {
    expect(() => subjects.hostCmd(bad, 'launch')).toThrow(InvalidSubjectTokenError);
  });

  it('gives each identity its own inbox prefix', () => {
    expect(inboxPrefix('key-broker')).toBe('_INBOX_key_broker');
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: undefined } })).toBe(
      '{"a":{"d":[1,{"x":1,"y":2}]},"b":1}',
    );
  });
  it('refuses non-finite numbers', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(TypeError);
  });
});

describe('CcmError', () => {
  it('round-trips through its wire payload', () => {
    const e = new CcmError(ErrorCodes.Conflict, 'busy', { details: { workload: 'w1' } });
    const back = CcmError.fromPayload(e.toPayload());
    expect(back).toMatchObject({
      code: 'CONFLICT',
      retryable: false,
      message: 'busy',
      details: { workload: 'w1' },
    });
  });
  it('marks timeouts retryable by default', () => {
    expect(new CcmError(ErrorCodes.Timeout, 'slow').retryable).toBe(true);
  });
  it('flattens schema issues into readable problems', () => {
    const e = validationError('ping request', [{ path: ['message'], message: 'expected string' }]);
    expect(e.message).toBe('ping request is invalid: message: expected string');
    expect(e.details).toEqual({ problems: ['message: expected string'] });
  });
});

describe('natsPermissionsFor', () => {
  it('lets a service publish only its own aggregates and the commands it calls', () => {
    const p = natsPermissionsFor('network-overlay');
    expect(p.publish).toContain('ccm.evt.overlay.>');
    expect(p.publish).not.toContain('ccm.evt.migration.>');
    expect(p.subscribe).toEqual(['ccm.cmd.network-overlay.>', '_INBOX_network_overlay.>']);
  });
  it('pins a host-agent to its host id', () => {
    expect(natsPermissionsFor('host-agent', { hostId: 'h1' }).subscribe[0]).toBe('ccm.cmd.host.h1.>');
  });
  it('gives no service the API to change a stream or read it by sequence, only its own consumers', () => {
    for (const s of SERVICES) {
      const api = natsPermissionsFor(s, { hostId: 'h1', vmId: 'v1' }).publish.filter((p) =>
        p.startsWith('$JS'),
      );
      expect(
        api.filter((p) => /STREAM\.(CREATE|UPDATE|DELETE|PURGE|MSG)|DIRECT|CONSUMER\.DELETE/.test(p)),
      ).toEqual([]);
      const own = [...(DURABLE_CONSUMERS[s] ?? []), ...(s === 'host-agent' ? hostAgentConsumers('h1') : [])];
      for (const p of api.filter((p) => p.includes('CONSUMER.')))
        expect(own.some((c) => p.includes(`.${c.durable}`))).toBe(true);
    }
    // A host-agent reads every host's VM phase changes through its own host's consumer only; an
    // unpinned one gets none.
    expect(natsPermissionsFor('host-agent', { hostId: 'h1' }).publish).toContain(
      '$JS.API.CONSUMER.MSG.NEXT.CCM_EVENTS.lent-addresses-h1',
    );
    expect(natsPermissionsFor('host-agent').publish.filter((p) => p.includes('CONSUMER.'))).toEqual([]);
    expect(natsPermissionsFor('saga-coordinator').publish).toContain(
      '$JS.API.CONSUMER.CREATE.CCM_REQUESTS.migrate-intake.ccm.req.migrate',
    );
    expect(natsPermissionsFor(BOOTSTRAP).publish).toContain('$JS.API.STREAM.UPDATE.CCM_EVENTS');
  });
});
