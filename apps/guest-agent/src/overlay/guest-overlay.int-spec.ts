import { ErrorCodes } from '@ccm/contracts';
import { generateKeyPair } from '@ccm/wireguard';
import { ccmFailure, startTestStack, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestClient, type GuestClient, type GuestProcess, startGuest } from '../__fixtures__/guests.js';

/**
 * The guest side of the overlay on a guest-agent process (sim overlay driver) over real NATS: the
 * network-overlay brings up the guest's interface under the guest's own key, sets its peers and moves
 * a /32 on and off it; everything else is refused with a typed error and changes nothing.
 */
describe('the guest-agent keeps its own overlay interface (sim driver)', () => {
  let stack: TestStack;
  let ncOverlay: NatsConnection;
  let ncOperator: NatsConnection;
  let overlay: GuestClient;
  let operator: GuestClient;
  let guest: GuestProcess;
  let publicKey: string;
  const vm = 'vm-ov';
  const peer = generateKeyPair().publicKey;

  beforeAll(async () => {
    stack = await startTestStack({ postgres: false });
    ncOverlay = await stack.connectAs('network-overlay');
    ncOperator = await stack.connectAs('operator');
    overlay = await guestClient(ncOverlay, stack.keysDir, 'network-overlay');
    operator = await guestClient(ncOperator, stack.keysDir);
    guest = await startGuest(stack, vm, operator.send, { CCM_GUEST_OVERLAY_ENDPOINT: '10.78.0.9:51820' });
    publicKey = (await operator.send(vm, 'identity', {})).publicKey as string;
  });
  afterAll(async () => {
    await guest?.stop();
    await Promise.allSettled([ncOverlay?.close(), ncOperator?.close()]);
    await stack?.stop();
  });

  const state = () => operator.send(vm, 'overlay-state', {});

  it('refuses every change before the interface is up, and an interface under another key', async () => {
    expect(
      (await ccmFailure(overlay.send(vm, 'overlay-address', { ip: '10.98.0.9', present: true }))).code,
    ).toBe(ErrorCodes.Conflict);
    const other = await ccmFailure(
      overlay.send(vm, 'overlay-up', { publicKey: peer, nodeIp: '10.98.0.2', overlayCidr: '10.98.0.0/24' }),
    );
    expect(other).toMatchObject({ code: ErrorCodes.Refused, details: { reason: 'not-this-guest' } });
    expect(await state()).toMatchObject({ up: false, addresses: [], peers: [] });
  });

  it('comes up under its identity key, takes peers and a workload /32, and moves it away again', async () => {
    const up = { publicKey, nodeIp: '10.98.0.2', overlayCidr: '10.98.0.0/24' };
    expect(await overlay.send(vm, 'overlay-up', up)).toEqual({
      publicKey,
      interface: 'ccm-wg0',
      endpoint: '10.78.0.9:51820',
    });
    expect(await overlay.send(vm, 'overlay-up', up)).toMatchObject({ publicKey }); // a retry
    const entry = {
      publicKey: peer,
      endpoint: '10.78.0.3:51820',
      allowedIps: ['10.98.0.3/32', '10.98.0.50/32'],
    };
    expect(await overlay.send(vm, 'overlay-peers', { peers: [entry] })).toEqual({ applied: 1 });
    expect(await overlay.send(vm, 'overlay-address', { ip: '10.98.0.60', present: true })).toEqual({
      ip: '10.98.0.60',
      present: true,
    });
    expect(await state()).toMatchObject({
      up: true,
      publicKey,
      nodeIp: '10.98.0.2',
      addresses: ['10.98.0.2', '10.98.0.60'],
      peers: [entry],
    });
    // A probe from this guest: answered by itself while it holds the /32 (the sim carries no packets).
    await overlay.send(vm, 'overlay-watch', { watchId: 'w1', ip: '10.98.0.60', port: 8080 });
    await overlay.send(vm, 'overlay-address', { ip: '10.98.0.60', present: false });
    const { samples, stopped } = (await overlay.send(vm, 'overlay-samples', {
      watchId: 'w1',
      stop: true,
    })) as {
      samples: Array<{ t: number; by?: string }>;
      stopped: boolean;
    };
    expect(stopped).toBe(true);
    expect(samples.some((s) => s.by === vm)).toBe(true);
    expect(samples.at(-1)?.by).toBeUndefined();
    expect((await ccmFailure(overlay.send(vm, 'overlay-samples', { watchId: 'w1' }))).code).toBe(
      ErrorCodes.NotFound,
    );
    expect((await state()).addresses).toEqual(['10.98.0.2']);
  });

  it('answers bad input and other callers with typed errors and keeps its interface as it was', async () => {
    const before = await state();
    const cases: Array<[string, unknown, string]> = [
      ['overlay-address', { ip: '10.99.1.1', present: true }, ErrorCodes.ValidationFailed],
      ['overlay-address', { ip: '10.98.0.2', present: false }, ErrorCodes.ValidationFailed],
      ['overlay-address', { ip: '10.98.0.300', present: true }, ErrorCodes.ValidationFailed],
      [
        'overlay-peers',
        { peers: [{ publicKey, allowedIps: ['10.98.0.7/32'] }] },
        ErrorCodes.ValidationFailed,
      ],
      ['overlay-peers', { peers: [{ publicKey: 'not-a-key' }] }, ErrorCodes.ValidationFailed],
      [
        'overlay-peers',
        { peers: [{ publicKey: peer, allowedIps: ['10.98.0.1/40'] }] },
        ErrorCodes.ValidationFailed,
      ],
      ['overlay-peers', { peers: [] }, ErrorCodes.ValidationFailed],
      ['overlay-up', { publicKey, nodeIp: '10.97.0.2', overlayCidr: '10.97.0.0/24' }, ErrorCodes.Conflict],
      [
        'overlay-up',
        { publicKey, nodeIp: '10.96.0.2', overlayCidr: '10.98.0.0/24' },
        ErrorCodes.ValidationFailed,
      ],
      ['overlay-watch', { watchId: 'w2', ip: '10.98.0.2', port: 0 }, ErrorCodes.ValidationFailed],
    ];
    for (const [verb, data, code] of cases) {
      expect((await ccmFailure(overlay.send(vm, verb, data))).code, `${verb} ${JSON.stringify(data)}`).toBe(
        code,
      );
    }
    const valid: Record<string, unknown> = {
      'overlay-up': { publicKey, nodeIp: '10.98.0.2', overlayCidr: '10.98.0.0/24' },
      'overlay-peers': { peers: [{ publicKey: peer, remove: true }] },
      'overlay-address': { ip: '10.98.0.61', present: true },
      'overlay-down': {},
      'overlay-watch': { watchId: 'w3', ip: '10.98.0.2', port: 8080 },
    };
    for (const [verb, data] of Object.entries(valid)) {
      expect((await ccmFailure(operator.send(vm, verb, data))).code, verb).toBe(ErrorCodes.Unauthorized);
    }
    expect(await state()).toEqual(before);
  });

  it('goes down on overlay-down (a retry finds it down)', async () => {
    expect(await overlay.send(vm, 'overlay-down', {})).toEqual({ down: true });
    expect(await overlay.send(vm, 'overlay-down', {})).toEqual({ down: false });
    expect(await state()).toMatchObject({ up: false, addresses: [], peers: [] });
  });
});
