import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostEventSubject, STREAMS, type GuestLease, type TransferView, type VmView } from '@ccm/contracts';
import { type Identity } from '@ccm/keys';
import { encodeEnvelope, sealEnvelope } from '@ccm/messaging';
import { ip, pollUntil } from '@ccm/testing';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_QEMU, inProcessHosts, type InProcessHosts } from './__fixtures__/agents.js';

/**
 * The guest address lease (CCM_GUEST_NET) of a live-migrated VM: the guest keeps its address, so the
 * destination keeps the source's lease (and hands the guest the same fw_cfg blob), the source keeps it
 * through a cancel or a rollback and keeps it lent once the VM has left (until the guest ends on
 * another host: `lent-addresses`), and a failed destination frees it.
 * Two agents (real NATS and Postgres) on the stand-in QEMU of __fixtures__/fake-qemu.mjs, whose
 * migrations are scripted per migration (a `fake-qemu-mode` file in the VM's run dir): no stream flows.
 * Both hosts' guest networks are one bridge in this namespace; as both run VM `v1`, they make the same
 * tap name for it (each replaces the other's): harmless here, the stand-in opens no tap.
 */
const A = 'lease-a';
const B = 'lease-b';
/** A third host: the next hop of a guest that moves on, and (its NATS user) the forger of the attacker test. */
const C = 'lease-c';
const BRIDGE = `ccmls${process.pid % 100000}`;
const NET = 'cidr=10.211.0.0/24,gateway=10.211.0.1';
const A_ENV = { CCM_GUEST_NET: `bridge=${BRIDGE},${NET},range=10.211.0.100-10.211.0.109` };
const SPEC = { memoryMiB: 32, kernel: FAKE_QEMU, nics: [{ bridge: BRIDGE }] };

const skipReason =
  process.getuid?.() !== 0
    ? 'taps on a guest bridge need root'
    : (() => {
        const made = ip('link', 'add', BRIDGE, 'type', 'bridge');
        return made.ok ? undefined : `cannot make a bridge: ${made.out}`;
      })();
if (skipReason) console.warn(`skipping the guest address lease specs: ${skipReason}`);

describe.skipIf(!!skipReason)('a live-migrated VM keeps its guest address lease', () => {
  let h: InProcessHosts;
  const vmOn = async (host: string, vmId: string): Promise<VmView | undefined> =>
    (await h.client.send(host, 'describe', { vmId })).vms.find((v) => v.vmId === vmId);
  const ended = (id: string, from = A) =>
    pollUntil(
      `migration ${id} to end`,
      async () => (await h.client.send(from, 'describe', {})).migrations.find((m) => m.migrationId === id),
      (t) => !!t && ['Completed', 'Cancelled', 'Failed'].includes(t.phase),
      { timeoutMs: 20_000, intervalMs: 50 },
    ) as Promise<TransferView>;
  const blob = (v: VmView) => readFile(join(v.runDir, 'guest-vm.env'), 'utf8');
  const qemuArgs = async (v: VmView) => (await readFile(`/proc/${v.pid}/cmdline`, 'utf8')).split('\0');

  /** `v1`'s destination on B for `migrationId`, with the lease `v1` holds at A. */
  async function prepareOnB(migrationId: string, guestNet: GuestLease) {
    return h.client.send(B, 'prepare-incoming', { vmId: 'v1', spec: SPEC, migrationId, guestNet });
  }

  /** Migrates `v1` off `from` (A) to `uri` as the stand-in QEMU is told (`mode`). */
  async function migrateFromA(migrationId: string, uri: string, mode: string, extra = {}, from = A) {
    await writeFile(join((await vmOn(from, 'v1'))!.runDir, 'fake-qemu-mode'), mode);
    await h.client.send(from, 'start-migration', { migrationId, vmId: 'v1', uri, ...extra });
  }

  /** Moves `v1` from `from` to `to` (prepared with `lease`) to the end: the guest runs at `to`. */
  async function move(migrationId: string, from: string, to: string, lease: GuestLease) {
    const dst = (
      await h.client.send(to, 'prepare-incoming', { vmId: 'v1', spec: SPEC, migrationId, guestNet: lease })
    ).vm;
    expect(dst.guestNet).toEqual(lease);
    await migrateFromA(migrationId, dst.incomingUri!, 'completes', {}, from);
    expect((await ended(migrationId, from)).phase).toBe('Completed');
    // The stand-in destination runs once told the stream arrived.
    process.kill(dst.pid!, 'SIGUSR2');
    await pollUntil(
      `v1 to run on ${to}`,
      () => vmOn(to, 'v1'),
      (v) => v?.phase === 'Running',
    );
    await pollUntil(
      `v1 to leave ${from}`,
      () => vmOn(from, 'v1'),
      (v) => v?.phase === 'MigratedAway',
    );
  }

  /** Until B frees `address` (its lent-addresses consumer read the guest's end). */
  const bFrees = (address: string) =>
    pollUntil(
      'B to free the address',
      () => freeOnB(address),
      (free) => free,
      {
        timeoutMs: 15_000,
        intervalMs: 200,
      },
    );

  /** The address A leases to a new VM now (launched and destroyed again to find out). */
  async function nextOnA(): Promise<string | undefined> {
    const probe = (await h.client.send(A, 'launch', { vmId: 'probe', spec: SPEC })).vm;
    await h.client.send(A, 'destroy', { vmId: 'probe' });
    return probe.guestNet?.address;
  }

  /** Whether `host` (B) would keep `address` for another VM now (prepared and ended again to find out). */
  async function freeOnB(address: string, host = B): Promise<boolean> {
    const probe = { vmId: 'probe', spec: SPEC, guestNet: { address, prefix: 24 } };
    const ok = await h.client.send(host, 'prepare-incoming', probe).then(
      () => true,
      (e: unknown) => {
        if ((e as { code?: string }).code === 'GUEST_ADDRESS_UNAVAILABLE') return false;
        throw e;
      },
    );
    if (ok) await h.client.send(host, 'destroy', { vmId: 'probe' });
    return ok;
  }

  beforeAll(async () => {
    h = await inProcessHosts([A, B, C], {
      CCM_HYPERVISOR: 'qemu',
      CCM_QEMU_BIN: FAKE_QEMU,
      CCM_QEMU_ACCEL: 'tcg',
      CCM_SEV: 'off',
      CCM_VM_START_TIMEOUT_MS: '5000',
      CCM_MIGRATION_POLL_MS: '50',
      CCM_MIGRATION_HOST: '127.0.0.1',
    });
    await h.start(A, A_ENV);
    await h.start(B, { CCM_GUEST_NET: `bridge=${BRIDGE},${NET},range=10.211.0.150-10.211.0.159` });
    await h.start(C, { CCM_GUEST_NET: `bridge=${BRIDGE},${NET},range=10.211.0.200-10.211.0.209` });
  });
  afterAll(async () => {
    delete process.env['CCM_FAKE_QEMU_MODE'];
    await h?.close();
    ip('link', 'del', BRIDGE);
  });

  it('the destination keeps the source’s lease with the same fw_cfg blob; cancel and rollback keep it at the source, a failed destination frees it, and once the VM has left the source keeps it lent', async () => {
    process.env['CCM_FAKE_QEMU_MODE'] = 'active';
    const src = (await h.client.send(A, 'launch', { vmId: 'v1', spec: SPEC })).vm;
    const lease = { address: '10.211.0.100', prefix: 24, gateway: '10.211.0.1' };
    expect(src.guestNet).toEqual(lease);

    // The destination keeps it (outside B's own range) and hands the guest the same blob.
    const dst = (await prepareOnB('m1', src.guestNet!)).vm;
    expect(dst).toMatchObject({ phase: 'Incoming', guestNet: lease });
    expect(await blob(dst)).toBe(await blob(src));
    expect(await qemuArgs(dst)).toContain(`name=opt/ccm/vm,file=${join(dst.runDir, 'guest-vm.env')}`);
    expect(await freeOnB(lease.address)).toBe(false);
    // A repeated prepare answers the same destination; one with another lease is a conflict.
    expect((await prepareOnB('m1', src.guestNet!)).uri).toBe(dst.incomingUri);
    await expect(prepareOnB('m1', { ...lease, address: '10.211.0.101' })).rejects.toMatchObject({
      code: 'CONFLICT',
    });

    // A cancel: the source runs on with its address; A leases the next one to a new VM.
    await migrateFromA('m1', dst.incomingUri!, 'active');
    await h.client.send(A, 'cancel', { migrationId: 'm1' });
    expect((await ended('m1')).phase).toBe('Cancelled');
    expect(await vmOn(A, 'v1')).toMatchObject({ phase: 'Running', guestNet: lease });
    const other = (await h.client.send(A, 'launch', { vmId: 'v2', spec: SPEC })).vm;
    expect(other.guestNet?.address).toBe('10.211.0.101');
    await h.client.send(A, 'destroy', { vmId: 'v2' });
    // The saga's rollback removes the destination (destroy-incoming): B frees the address.
    await h.client.send(B, 'destroy', { vmId: 'v1' });
    expect(await freeOnB(lease.address)).toBe(true);

    // Completed with the source held, then rolled back (switch-back, then the source resumed).
    const dst2 = (await prepareOnB('m2', lease)).vm;
    await migrateFromA('m2', dst2.incomingUri!, 'completes', { holdSource: true });
    expect((await ended('m2')).phase).toBe('Completed');
    expect(await vmOn(A, 'v1')).toMatchObject({ phase: 'Paused', guestNet: lease });
    await h.client.send(B, 'destroy', { vmId: 'v1' });
    expect((await h.client.send(A, 'resume', { vmId: 'v1' })).vm).toMatchObject({
      phase: 'Running',
      guestNet: lease,
    });

    // A destination that fails (its process dies) frees the address.
    const dst3 = (await prepareOnB('m3', lease)).vm;
    process.kill(dst3.pid!, 'SIGKILL');
    const failed = await pollUntil(
      'the destination to fail',
      () => vmOn(B, 'v1'),
      (v) => v?.phase === 'Failed',
    );
    expect(failed?.guestNet).toBeUndefined();
    expect(await freeOnB(lease.address)).toBe(true);

    // Completed: the VM has left A, but its guest uses the address on B: A keeps it lent, so a new VM
    // at A gets the next one; B keeps it for the guest.
    await move('m4', A, B, lease);
    const left = await vmOn(A, 'v1');
    expect(left?.guestNet).toBeUndefined();
    expect(left?.guestNetLent).toEqual({ ...lease, since: expect.any(String) });
    expect((await h.client.send(A, 'launch', { vmId: 'v3', spec: SPEC })).vm.guestNet?.address).toBe(
      '10.211.0.101',
    );
    expect(await nextOnA()).toBe('10.211.0.102');
    expect((await vmOn(B, 'v1'))?.guestNet).toEqual(lease);
    expect(await freeOnB(lease.address)).toBe(false);
  });

  it('prepare-incoming refuses a lease outside its CIDR or held by another VM there (GUEST_ADDRESS_UNAVAILABLE, not retryable), starting nothing', async () => {
    const held = (await vmOn(B, 'v1'))!.guestNet!;
    for (const [vmId, address, reason] of [
      ['far', '10.212.0.5', 'outside-cidr'],
      ['twin', held.address, 'leased'],
    ] as const) {
      await expect(
        h.client.send(B, 'prepare-incoming', { vmId, spec: SPEC, guestNet: { address, prefix: 24 } }),
      ).rejects.toMatchObject({
        code: 'GUEST_ADDRESS_UNAVAILABLE',
        retryable: false,
        details: expect.objectContaining({ reason, address }),
      });
      expect(await vmOn(B, vmId)).toBeUndefined();
    }
  });

  it('the source keeps a moved guest’s address lent until the guest ends on another host, even one that ended while the source agent was down; forged ends free nothing; a guest that comes back holds it again', async () => {
    const lease = (await vmOn(B, 'v1'))!.guestNet!;
    expect(lease.address).toBe('10.211.0.100');
    // Forgeries, through host C's NATS user (which may publish C's host events only): C's agent
    // speaking for B, another identity's signature on a host event, B's agent's signature on C's
    // event, and data that is no vm-changed. None frees anything.
    const nc = await h.stack.connectAs('host-agent', C);
    const end = { vmId: 'v1', phase: 'Destroyed', previous: 'Running', at: new Date().toISOString() };
    const forge = async (signer: Identity, data: unknown) => {
      const subject = hostEventSubject(C, 'vm-changed');
      const env = sealEnvelope(signer, { natssubject: subject, type: 'ccm.host.vm-changed', data });
      await jetstream(nc).publish(subject, encodeEnvelope(env), { msgID: env.id });
    };
    await forge(await h.stack.identity('host-agent', C), { ...end, hostId: B });
    await forge(await h.stack.identity('vm-lifecycle'), { ...end, hostId: C });
    // B's agent's signature on C's subject (as if B's key were stolen onto C's connection).
    await forge(await h.stack.identity('host-agent', B), { ...end, hostId: C });
    await forge(await h.stack.identity('host-agent', C), { hostId: C, vmId: 'v1', phase: 'Gone' });
    await nc.close();
    const jsm = await jetstreamManager(h.nc);
    const settled = () =>
      pollUntil(
        'A’s lent-addresses consumer to take every event',
        () => jsm.consumers.info(STREAMS.events.name, `lent-addresses-${A}`),
        (i) => i.num_pending === 0 && i.num_ack_pending === 0,
        { timeoutMs: 10_000, intervalMs: 50 },
      );
    await settled();
    expect(await nextOnA()).toBe('10.211.0.102');
    // Its VM id is taken while its guest runs elsewhere: a local launch of it is a conflict.
    await expect(h.client.send(A, 'launch', { vmId: 'v1', spec: SPEC })).rejects.toMatchObject({
      code: 'CONFLICT',
    });

    // The guest moves on from B to C: A (and now B) keep the address lent, C holds it.
    await move('m4c', B, C, lease);
    await settled();
    expect(await nextOnA()).toBe('10.211.0.102');
    expect(await freeOnB(lease.address)).toBe(false);

    // The guest ends on C while A's agent is down: A frees the address once it is back; B frees it too.
    await h.stop(A);
    await h.client.send(C, 'destroy', { vmId: 'v1' });
    await h.start(A, A_ENV);
    await pollUntil('A to free the address', nextOnA, (a) => a === lease.address, {
      timeoutMs: 15_000,
      intervalMs: 200,
    });
    expect((await vmOn(A, 'v1'))?.guestNetLent).toBeUndefined();
    await bFrees(lease.address);

    // Launched at A again, moved to B and back: A takes its lent address back for the guest (not
    // `leased`); now B lends it until the guest ends at A.
    expect((await h.client.send(A, 'launch', { vmId: 'v1', spec: SPEC })).vm.guestNet).toEqual(lease);
    await move('m5', A, B, lease);
    await settled();
    expect(await nextOnA()).toBe('10.211.0.102');
    await move('m6', B, A, lease);
    const back = await vmOn(A, 'v1');
    expect(back).toMatchObject({ phase: 'Running', guestNet: lease });
    expect(back?.guestNetLent).toBeUndefined();
    expect((await vmOn(B, 'v1'))?.guestNetLent).toMatchObject(lease);
    expect(await freeOnB(lease.address)).toBe(false);
    await h.client.send(A, 'destroy', { vmId: 'v1' });
    await bFrees(lease.address);
    expect(await nextOnA()).toBe(lease.address);
    await h.client.send(A, 'destroy', { vmId: 'v3' });
  });
});
