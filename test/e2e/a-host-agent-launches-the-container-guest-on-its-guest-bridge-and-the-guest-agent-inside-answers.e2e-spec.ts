import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type VmSpecInput } from '@ccm/contracts';
import { guestClient, pollUntil } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapName } from '@ccm/qmp';
import { containerBuildUnavailable, ensureContainerImage } from '../../tools/guest-image/container-image.js';
import { containerGuestOnBridge } from './support/container-guest.js';
import { qemuHostsUnavailable, startHostNamespaces, type HostNamespaces } from './support/host-namespaces.js';

/**
 * The lab's guest underlay (issue 12 item 2) and the container guest launched by a host-agent's qemu
 * driver (item 1): the host is a network namespace whose veth end sits on a guest bridge with the host's
 * address; the agent makes the guest's tap on that bridge from the VM spec's `nics`, boots the container
 * image with its root and app disks and its fw_cfg run script, and removes the tap when the VM ends.
 * The guest-agent inside reaches NATS in the root namespace across both bridges and answers ping.
 */
const skip = qemuHostsUnavailable() ?? containerBuildUnavailable();
if (skip) console.warn(`[container guest on a host-agent] skipped: ${skip}`);

const HOST = 'ca';
const VM = 'cvm-lab1';
const BRIDGE = 'ccmgbr';

/** The VM taps (tapName's form) in the host's namespace enslaved to `bridge`. */
const tapsOn = (ns: string, bridge: string): string[] => {
  const r = spawnSync('ip', ['-n', ns, '-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' });
  return [...(r.stdout ?? '').matchAll(/^\d+: ([^:@]+)/gm)]
    .map((m) => m[1])
    .filter((n) => /^ccm[0-9a-f]{10}\d$/.test(n));
};

describe.skipIf(skip !== undefined)('a host-agent launches the container guest on its guest bridge', () => {
  let ns: HostNamespaces;
  let work: string;
  let spec: VmSpecInput;

  beforeAll(async () => {
    const image = await ensureContainerImage();
    ns = await startHostNamespaces(
      [HOST],
      { CCM_HYPERVISOR: 'qemu', CCM_QEMU_ACCEL: 'tcg', CCM_SEV: 'off', CCM_VM_START_TIMEOUT_MS: '60000' },
      { guestBridge: BRIDGE },
    );
    work = await mkdtemp(join(tmpdir(), 'ccm-cg-lab-'));
    spec = await containerGuestOnBridge(ns, image, {
      vmId: VM,
      bridge: BRIDGE,
      mac: '52:54:00:cc:10:01',
      guest: 0,
      work,
    });
    await ns.startAgent(HOST);
  }, 900_000);

  afterAll(async () => {
    await ns?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('refuses a NIC on a bridge the host does not have: VALIDATION_FAILED, and no tap is made', async () => {
    const err = await ns.client
      .send(HOST, 'launch', {
        vmId: 'cvm-nobridge',
        spec: { ...spec, nics: [{ bridge: 'nosuchbr', mac: '52:54:00:cc:10:02' }] },
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect((err as Error).message).toMatch(/no bridge nosuchbr/);
    expect(tapsOn(ns.hosts[HOST].ns, BRIDGE)).toEqual([]);
  });

  it('boots it with its tap on the bridge, and the guest-agent inside answers ping over NATS', async () => {
    const t0 = Date.now();
    const launched = await ns.client.send(HOST, 'launch', { vmId: VM, spec });
    expect(launched.vm.phase).toBe('Running');
    expect(tapsOn(ns.hosts[HOST].ns, BRIDGE)).toEqual([tapName(VM, 0)]);
    const client = await guestClient(ns.nc, ns.stack.keysDir);
    const serial = (): Promise<string> =>
      readFile(join(launched.vm.runDir, 'serial.log'), 'utf8').catch(() => '');
    const reply = await pollUntil(
      'the guest-agent in the guest to answer ping',
      () =>
        client
          .send(VM, 'ping', { message: 'over the guest bridge' }, { timeoutMs: 2_000 })
          .catch(() => undefined),
      Boolean,
      { timeoutMs: 240_000, intervalMs: 1_000 },
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; serial console:\n${(await serial()).slice(-3000)}`);
    });
    console.log(`[container guest on a host-agent] ping answered ${Date.now() - t0} ms after launch`);
    expect(reply).toMatchObject({
      service: 'guest-agent',
      instanceId: `guest-${VM}`,
      echo: 'over the guest bridge',
    });
    expect(await serial()).toMatch(
      /CCM-AGENT starting node v20\.\d+\.\d+ vm=cvm-lab1 nats=nats:\/\/10\.77\./,
    );
    // Launched without SEV: the reserved secret page is empty, and the guest-agent has no identity secret.
    expect(await serial()).toMatch('ccm-init: no secret table at 0xf00000');
  }, 300_000);

  it('destroys it and removes its tap', async () => {
    const d = await ns.client.send(HOST, 'destroy', { vmId: VM });
    expect(d.vm.phase).toBe('Destroyed');
    await pollUntil(
      'the tap to go',
      () => tapsOn(ns.hosts[HOST].ns, BRIDGE),
      (t) => t.length === 0,
      {
        timeoutMs: 10_000,
      },
    );
  });
});
