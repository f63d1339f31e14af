import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEY_BROKER_VERBS, keyBrokerSubject, PutPolicyReplySchema } from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { LabAuthority, labPin } from '@ccm/sev-emulator';
import { startServiceProcess, type ServiceProcess } from '@ccm/testing';
import { ensureGuestImage, tinyGuestSpec } from '../../../tools/guest-image/guest-image.js';
import { startHostNamespaces, type HostNamespaces } from './host-namespaces.js';

export const VM_SOURCE = 'host-a';
export const VM_TARGET = 'host-b';

export interface VmSagaStack {
  ns: HostNamespaces;
  /** Where the services' logs and the lab's keys are. */
  work: string;
  /** The tiny guest: 256 MiB, dirtying 32 MiB at 8 MB/s, its counter on the serial console. */
  spec: { memoryMiB: number; kernel: string; initrd: string; cmdline: string };
  close(): Promise<void>;
}

/**
 * The VM saga with nothing scripted: two host-agents in two network namespaces running QEMU (TCG) with
 * the software secure processor of one lab, the real key-broker and saga-coordinator as processes, and
 * the guest owner's policy for `workloads` (class `tiny-vms`): trust the lab root that endorses both
 * hosts, migrate to host-b only.
 */
export async function startVmSagaStack(
  tag: string,
  workloads: string[],
  agentEnv: Record<string, string> = {},
): Promise<VmSagaStack> {
  const work = await mkdtemp(join(tmpdir(), `ccm-${tag}-`));
  let ns: HostNamespaces | undefined;
  const services: ServiceProcess[] = [];
  const close = async () => {
    for (const s of services.reverse()) await s.stop('SIGTERM');
    await ns?.close();
    await rm(work, { recursive: true, force: true });
  };
  try {
    const lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
    const image = await ensureGuestImage();
    const spec = tinyGuestSpec(image, { memoryMiB: 256, dirtyMiB: 32, dirtyRateMBps: 8 });
    ns = await startHostNamespaces([VM_SOURCE, VM_TARGET], {
      CCM_HYPERVISOR: 'qemu',
      CCM_QEMU_ACCEL: 'tcg',
      CCM_SEV: 'emulated',
      CCM_SEV_LAB_DIR: join(work, 'lab'),
      CCM_MIGRATION_POLL_MS: '50',
      CCM_PROGRESS_INTERVAL_MS: '200',
      ...agentEnv,
    });
    const stack = ns.stack;
    await Promise.all([ns.startAgent(VM_SOURCE), ns.startAgent(VM_TARGET)]);
    for (const name of ['key-broker', 'saga-coordinator'] as const) {
      services.push(
        await startServiceProcess(
          name,
          stack.env({ CCM_INSTANCE_ID: `${name}-${tag}`, CCM_LOG_LEVEL: 'log' }),
          { readyTimeoutMs: 60_000, logFile: join(work, `${name}.log`) },
        ),
      );
    }
    const owner = await stack.connectAs('guest-owner');
    try {
      await signedRequest(
        owner,
        await loadIdentity(stack.keysDir, 'guest-owner'),
        await loadTrustStore(stack.keysDir),
        keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
        {
          policy: {
            workloadClass: 'tiny-vms',
            environment: 'lab',
            workloads,
            trustedRoots: {
              amd: [],
              lab: [{ name: 'lab', generation: 'milan', arkBodySha256: labPin(lab) }],
            },
            sev: { minFirmware: { apiMajor: 0, apiMinor: 0 }, guestPolicy: 0x1, launchDigests: [] },
            migration: { allowed: true, targetHosts: [VM_TARGET] },
          },
          expectedVersion: 0,
        },
        PutPolicyReplySchema,
        { idempotencyKey: `${tag}-owner-policy`, timeoutMs: 20_000 },
      );
    } finally {
      await owner.close();
    }
    return { ns, work, spec, close };
  } catch (err) {
    await close();
    throw err;
  }
}
