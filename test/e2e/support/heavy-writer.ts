import { join } from 'node:path';
import { type TransferView, type VmView } from '@ccm/contracts';
import { counterReaches, pollUntil } from '@ccm/testing';
import { ensureGuestImage, tinyGuestSpec } from '../../../tools/guest-image/guest-image.js';
import { startHostNamespaces, type HostNamespaces } from './host-namespaces.js';

/** The phases a migration ends in. */
export const ENDED = ['Completed', 'Cancelled', 'Failed'];

/** Two QEMU hosts and a heavy-writer guest running on the first, with what the tests ask of them. */
export interface HeavyWriter {
  ns: HostNamespaces;
  /** 512 MiB, a 128 MiB buffer dirtied at 200 MB/s, counting on its console. */
  spec: { memoryMiB: number; kernel: string; initrd: string; cmdline: string };
  vmOn(host: string): Promise<VmView | undefined>;
  migrationOn(host: string, id: string): Promise<TransferView | undefined>;
  /** Polls the migration until it is in one of `phases` (3 min at most). */
  waitPhase(host: string, id: string, phases: string[]): Promise<TransferView>;
  serial(v: VmView): string;
}

/**
 * Starts host-agents `ids` in two network namespaces (the default QEMU, TCG, no SEV, 50 ms polls) and
 * launches the heavy-writer guest `vmId` on the first, waiting until it counts.
 */
export async function startHeavyWriter(ids: [string, string], vmId: string): Promise<HeavyWriter> {
  const image = await ensureGuestImage();
  const spec = tinyGuestSpec(image, { memoryMiB: 512, dirtyMiB: 128, dirtyRateMBps: 200 });
  const ns = await startHostNamespaces(ids, {
    CCM_HYPERVISOR: 'qemu',
    CCM_QEMU_ACCEL: 'tcg',
    CCM_SEV: 'off',
    CCM_MIGRATION_POLL_MS: '50',
  });
  const describe = (host: string) => ns.client.send(host, 'describe', { vmId });
  const w: HeavyWriter = {
    ns,
    spec,
    vmOn: async (host) => (await describe(host)).vms.find((v) => v.vmId === vmId),
    migrationOn: async (host, id) => (await describe(host)).migrations.find((m) => m.migrationId === id),
    waitPhase: (host, id, phases) =>
      pollUntil(
        `migration ${id} ${phases.join('|')}`,
        () => w.migrationOn(host, id),
        (t) => !!t && phases.includes(t.phase),
        { timeoutMs: 180_000, intervalMs: 100 },
      ) as Promise<TransferView>,
    serial: (v) => join(v.runDir, 'serial.log'),
  };
  try {
    await Promise.all(ids.map((id) => ns.startAgent(id)));
    const launched = await ns.client.send(ids[0], 'launch', { vmId, spec });
    await counterReaches(w.serial(launched.vm), 2, 90_000);
  } catch (err) {
    await ns.close();
    throw err;
  }
  return w;
}
