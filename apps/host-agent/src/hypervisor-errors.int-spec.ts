import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ccmFailure as failure } from '@ccm/testing';
import { FAKE_QEMU, startFakeQemuHost, type InProcessHosts } from './__fixtures__/agents.js';

/**
 * A hypervisor that misbehaves gives typed errors, never a hang or an INTERNAL: a QEMU that dies at
 * start, one that does not speak QMP, and replies of the wrong shape or not JSON at all. The stand-in
 * QEMU (__fixtures__/fake-qemu.mjs) is told how to misbehave through CCM_FAKE_QEMU_MODE.
 */
const HOST = 'fx';
const SPEC = { memoryMiB: 64, kernel: FAKE_QEMU };

describe('typed errors from a misbehaving hypervisor', () => {
  let h: InProcessHosts;
  const launch = (vmId: string, mode: string, key?: string) => {
    process.env['CCM_FAKE_QEMU_MODE'] = mode;
    return h.client.send(HOST, 'launch', { vmId, spec: SPEC }, { key });
  };

  beforeAll(async () => {
    h = await startFakeQemuHost(HOST);
  });
  afterAll(() => h?.close());

  it('a QEMU that dies at start: HYPERVISOR_START_FAILED with its stderr, the VM recorded Failed; a retry of the command gets the same answer', async () => {
    const err = await failure(launch('dies', 'die', 'launch-dies'));
    expect(err).toMatchObject({ code: 'HYPERVISOR_START_FAILED', retryable: false });
    expect(err.message).toMatch(/exited \(code 1.*could not load kernel: fake QEMU told to die at start/);
    expect(err.details).toMatchObject({ exitCode: 1 });
    expect(err.effect).toBe('none');
    const vm = (await h.client.send(HOST, 'describe', { vmId: 'dies' })).vms[0];
    expect(vm).toMatchObject({ phase: 'Failed' });
    // The inbox answers a repeated command with its first reply, even though QEMU would now start.
    const again = await failure(launch('dies', 'bad-shape', 'launch-dies'));
    expect(again.message).toBe(err.message);
  });

  it('a QMP greeting that is not JSON: HYPERVISOR_START_FAILED saying the handshake failed', async () => {
    const err = await failure(launch('garbled', 'garbage'));
    expect(err.code).toBe('HYPERVISOR_START_FAILED');
    expect(err.message).toMatch(/QMP handshake failed: no valid QMP greeting .*: this is not QMP/);
  });

  it('a reply of the wrong shape: HYPERVISOR_PROTOCOL_ERROR for that command, and the VM stays usable', async () => {
    expect((await launch('shapes', 'bad-shape')).vm.phase).toBe('Running');
    const err = await failure(h.client.send(HOST, 'pause', { vmId: 'shapes' }));
    expect(err).toMatchObject({ code: 'HYPERVISOR_PROTOCOL_ERROR', retryable: false });
    expect(err.details).toMatchObject({ reason: 'bad-shape', command: 'stop' });
    expect((await h.client.send(HOST, 'destroy', { vmId: 'shapes' })).vm.phase).toBe('Destroyed');
  });

  it('a reply that is not JSON poisons the connection: HYPERVISOR_PROTOCOL_ERROR, then HYPERVISOR_GONE; destroy still ends it', async () => {
    await launch('poison', 'bad-json');
    const first = await failure(h.client.send(HOST, 'pause', { vmId: 'poison' }));
    expect(first.code).toBe('HYPERVISOR_PROTOCOL_ERROR');
    expect(first.details).toMatchObject({ reason: 'bad-json' });
    const second = await failure(h.client.send(HOST, 'pause', { vmId: 'poison' }));
    expect(second.code).toBe('HYPERVISOR_GONE');
    const destroyed = await h.client.send(HOST, 'destroy', { vmId: 'poison' });
    expect(destroyed.vm).toMatchObject({ phase: 'Destroyed' });
    expect(destroyed.vm.pid).toBeUndefined();
  });

  it('commands on unknown VMs and migrations are NOT_FOUND, and a bad payload is VALIDATION_FAILED', async () => {
    expect((await failure(h.client.send(HOST, 'resume', { vmId: 'nobody' }))).code).toBe('NOT_FOUND');
    expect((await failure(h.client.send(HOST, 'continue', { migrationId: 'nothing' }))).code).toBe(
      'NOT_FOUND',
    );
    const bad = await failure(
      h.client.send(HOST, 'start-migration', { migrationId: 'm', vmId: 'v', uri: 'http://nope' }),
    );
    expect(bad.code).toBe('VALIDATION_FAILED');
  });
});
