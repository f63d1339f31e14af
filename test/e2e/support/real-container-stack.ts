import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LaunchVmReplySchema, subjects, type SignerName } from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type TrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import {
  guestClient,
  OperatorClient,
  pollUntil,
  startServiceProcess,
  startTestStack,
  type GuestClient,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import { z } from 'zod';
import {
  GUEST_IMAGE,
  prepareSimContainerFlow,
  simContainerGuest,
  simContainerPolicy,
} from '../../../tools/demo/container-migration.js';
import { ccm, type CcmRun } from './audit-cli.js';

export const HOSTS = ['host-a', 'host-b'] as const;
export const OVERLAY = 'ov-apps';
export const WORKLOAD_PORT = 8080;

/** Coordinator clocks at 1/5 of the real ones (provision-target 60 s, release-key 6 s, verify 2 s). */
const COORDINATOR_ENV = {
  CCM_SAGA_TIME_SCALE: '0.2',
  CCM_SAGA_MIN_STEP_TIMEOUT_MS: '2000',
  CCM_SAGA_TICK_MS: '100',
  CCM_OUTBOX_POLL_MS: '50',
};

/**
 * CCM's local stack on the sim drivers with no scripted participant: real nats-server and Postgres;
 * the saga-coordinator, key-broker, vm-lifecycle, container-checkpoint and network-overlay (sim driver)
 * as processes from dist/; two host-agents (sim hypervisor, software secure processor of one lab)
 * whose launched VMs start their guest-agent inside (emulated SNP); a guest owner's policy that
 * accepts the container guest's launch digests; the source VM launched on host-a by the operator's
 * `launch-vm` and admitted to an overlay with the key-broker's statement from its fresh evidence.
 */
export interface RealContainerStack {
  stack: TestStack;
  work: string;
  trust: TrustStore;
  services: Map<string, ServiceProcess>;
  /** The confidential VM on host-a the containers run in. */
  sourceVm: string;
  guests: GuestClient;
  /** Fast reads of a migration over NATS (polling); the outcome is read back with the built ccm. */
  operator: OperatorClient;
  /** The built ccm with this stack's NATS and keys. */
  ccm(args: string[]): Promise<CcmRun>;
  ccmJson<T = Record<string, unknown>>(args: string[]): Promise<T>;
  /** A signed request as `signer` (the guest owner, the operator). */
  send<S extends z.ZodType>(
    signer: SignerName,
    subject: string,
    data: unknown,
    reply: S,
  ): Promise<z.infer<S>>;
  /** Runs a counting container in the source VM and gives it an overlay /32; returns its address. */
  runContainer(id: string, pages: number, dirtyPagesPerSec: number): Promise<string>;
  counter(vmId: string, id: string): Promise<number>;
  /** The pid of the guest-agent inside a VM (read from its sim VM's run dir), if it runs. */
  guestPid(vmId: string): number | undefined;
  close(): Promise<void>;
}

export async function startRealContainerStack(workloads: readonly string[]): Promise<RealContainerStack> {
  const stack = await startTestStack({ hostIds: [...HOSTS] });
  const work = await mkdtemp(join(tmpdir(), 'ccm-real-saga-'));
  const services = new Map<string, ServiceProcess>();
  let operator: OperatorClient | undefined;
  const close = async () => {
    await operator?.close().catch(() => undefined);
    // The coordinator first (no new commands), then the rest; VMs outlive host-agents: end them too.
    await services.get('saga-coordinator')?.stop();
    await Promise.allSettled([...services.values()].map((p) => p.stop()));
    for (const pid of simVmPids(work)) signal(pid, 'SIGKILL');
    await stack.stop();
    await rm(work, { recursive: true, force: true });
  };
  try {
    const trust = await loadTrustStore(stack.keysDir);
    // The container guest image: what CCM_CONTAINER_VM_SPEC names and the owner's policy accepts.
    const guest = await simContainerGuest(work);
    const { spec } = guest;
    const base = (extra: Record<string, string>) => stack.env({ CCM_LOG_LEVEL: 'log', ...extra });
    const start = async (
      name: string,
      service: Parameters<typeof startServiceProcess>[0],
      env: Record<string, string>,
    ) => {
      services.set(
        name,
        await startServiceProcess(service, base({ CCM_INSTANCE_ID: `${name}-e2e`, ...env })),
      );
    };
    await start('key-broker', 'key-broker', {});
    await Promise.all(
      HOSTS.map((h) =>
        start(h, 'host-agent', {
          CCM_HOST_ID: h,
          CCM_HYPERVISOR: 'sim',
          CCM_SEV: 'emulated',
          CCM_SEV_LAB_DIR: guest.labDir,
          CCM_RUN_DIR: join(work, h),
          CCM_HEARTBEAT_INTERVAL_MS: '500',
          CCM_SIM_GUEST_AGENT: 'true',
          CCM_SIM_GUEST_IMAGE: GUEST_IMAGE,
          // what the guest-agents inside inherit: small sealed chunks, short stream waits
          CCM_GUEST_STREAM_CHUNK_BYTES: '16384',
          CCM_GUEST_STREAM_TIMEOUT_MS: '10000',
        }),
      ),
    );
    await start('vm-lifecycle', 'vm-lifecycle', { CCM_CONTAINER_VM_SPEC: JSON.stringify(spec) });
    await start('container-checkpoint', 'container-checkpoint', {
      CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: '16',
      CCM_CHECKPOINT_MAX_ROUNDS: '4',
    });
    await start('network-overlay', 'network-overlay', { CCM_OVERLAY_DRIVER: 'sim' });
    await start('saga-coordinator', 'saga-coordinator', COORDINATOR_ENV);

    const conns = new Map<string, Awaited<ReturnType<TestStack['connectAs']>>>();
    const send = async <S extends z.ZodType>(
      signer: SignerName,
      subject: string,
      data: unknown,
      reply: S,
    ) => {
      let nc = conns.get(signer);
      if (!nc) conns.set(signer, (nc = await stack.connectAs(signer)));
      return signedRequest(nc, await loadIdentity(stack.keysDir, signer), trust, subject, data, reply, {
        idempotencyKey: randomUUID(),
        timeoutMs: 90_000,
      });
    };
    await prepareSimContainerFlow(send, await simContainerPolicy(guest, workloads, HOSTS), HOSTS, {
      overlayId: OVERLAY,
      cidr: '10.77.0.0/24',
    });
    // The source VM: the operator's attested launch on host-a (the built `ccm vm launch`); with the
    // overlay named, the key-broker judges the new guest's fresh evidence and the vm-lifecycle admits
    // it with the broker's statement.
    const cli = (args: string[]) => ccm([...args, '--nats-url', stack.nats.url, '--keys-dir', stack.keysDir]);
    const launch = await cli([
      'vm',
      'launch',
      '--host',
      'host-a',
      ...workloads.flatMap((w) => ['--workload', w]),
      '--overlay',
      OVERLAY,
      '--json',
    ]);
    if (launch.code !== 0) throw new Error(`ccm vm launch exited ${launch.code}: ${launch.stderr}`);
    const launched = LaunchVmReplySchema.parse(JSON.parse(launch.stdout));
    if (launched.overlay?.overlayId !== OVERLAY)
      throw new Error(`${launched.vmId} was not admitted to ${OVERLAY}`);
    const sourceVm = launched.vmId;
    const guests = await guestClient(await stack.connectAs('operator'), stack.keysDir);
    operator = await OperatorClient.connect({ connectAs: stack.connectAs, identity: stack.identity, trust });

    const counter = async (vmId: string, id: string) =>
      (await guests.send(vmId, 'describe', { id })).counter as number;
    return {
      stack,
      work,
      trust,
      services,
      sourceVm,
      guests,
      operator,
      ccm: cli,
      async ccmJson<T>(args: string[]) {
        // A loaded machine may make the CLI's NATS connect time out (exit 3, UNAVAILABLE): ask again.
        const r = await pollUntil(
          `ccm ${args.join(' ')}`,
          () => cli([...args, '--json']),
          (x) => x.code !== 3,
          { timeoutMs: 60_000 },
        );
        if (r.code !== 0) throw new Error(`ccm ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
        return JSON.parse(r.stdout) as T;
      },
      send,
      async runContainer(id, pages, dirtyPagesPerSec) {
        await guests.send(sourceVm, 'run-container', { id, pages, dirtyPagesPerSec });
        await pollUntil(
          `${id} counts at the source`,
          () => counter(sourceVm, id),
          (c) => c > 2,
        );
        const a = await send(
          'operator',
          subjects.cmd('network-overlay', 'assign-workload'),
          { overlayId: OVERLAY, workloadId: id, vmId: sourceVm, port: WORKLOAD_PORT },
          z.object({ ip: z.string() }).loose(),
        );
        return a.ip;
      },
      counter,
      guestPid: (vmId) => {
        for (const h of HOSTS) {
          const f = join(work, h, 'vms', vmId, 'guest-agent.pid');
          if (existsSync(f)) return Number(readFileSync(f, 'utf8').trim());
        }
        return undefined;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Every sim VM and guest-agent pid written under the hosts' run dirs. */
function simVmPids(work: string): number[] {
  const pids: number[] = [];
  for (const h of HOSTS) {
    const vms = join(work, h, 'vms');
    if (!existsSync(vms)) continue;
    for (const vm of readdirSync(vms)) {
      for (const f of ['guest-agent.pid', 'vm.pid']) {
        const p = join(vms, vm, f);
        if (existsSync(p)) pids.push(Number(readFileSync(p, 'utf8').trim()));
      }
    }
  }
  return pids;
}

export function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}
