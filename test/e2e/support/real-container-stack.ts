import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  isFinalVmPhase,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LaunchVmReplySchema,
  ReleaseLogReplySchema,
  subjects,
  VmSpecSchema,
  type SignerName,
  type VmSpec,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type TrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { LabAuthority } from '@ccm/sev-emulator';
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
  type SimContainerGuest,
} from '../../../tools/demo/container-migration.js';
import { type ContainerImage } from '../../../tools/guest-image/container-image.js';
import { Supervisor } from '../../../tools/stack/supervisor.js';
import { ccm, type CcmRun } from './audit-cli.js';
import { sharedContainerGuest } from './container-guest.js';
import { startHostNamespaces, type HostNamespaces } from './host-namespaces.js';

export const HOSTS = ['host-a', 'host-b'] as const;
export const OVERLAY = 'ov-apps';
export const WORKLOAD_PORT = 8080;

/** The services that may run as several replicas ({@link RealStackOptions.replicas}). */
export const SCALABLE = [
  'key-broker',
  'vm-lifecycle',
  'container-checkpoint',
  'network-overlay',
  'saga-coordinator',
] as const;

export interface RealStackOptions {
  /**
   * Run every service (host-agents too) under tools/stack's {@link Supervisor}, which restarts one
   * that dies, as the local stack does. Then {@link RealContainerStack.services} stays empty: read a
   * service's current process with {@link RealContainerStack.pidOf}.
   */
  supervised?: boolean;
  /** Replicas of each {@link SCALABLE} service (default 1); replica i > 1 is named `<service>#<i>`. */
  replicas?: number;
  /** Extra coordinator settings (e.g. a short `CCM_SAGA_LEASE_MS`, so a killed replica's sagas move on). */
  coordinatorEnv?: Record<string, string>;
  /**
   * Real container guests under QEMU (TCG) instead of sim VMs: the host-agents run in two network
   * namespaces with a guest bridge (host-namespaces.ts), qemu driver, software secure processor, each
   * with a guest address pool (CCM_GUEST_NET); the vm-lifecycle launches CCM's container guest image
   * (the guest-agent with the runc driver from one shared app disk). Not with `supervised`.
   */
  qemu?: QemuGuests;
}

/** The QEMU mode's container guest ({@link RealStackOptions.qemu}). */
export interface QemuGuests {
  image: Pick<ContainerImage, 'kernel' | 'initrd' | 'rootDisk'>;
  /** Each guest's memory (default 512 MiB). */
  memoryMiB?: number;
  /** The guest bridge's name in each host namespace (unique to the test file). */
  bridge: string;
}

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
  /** Under a supervisor: the supervisor (its log lines in {@link supervisorLog}). */
  supervisor?: Supervisor;
  supervisorLog: string[];
  /** The pid of a service's current process (`host-a`, `key-broker`, `key-broker#2`, ...). */
  pidOf(name: string): number | undefined;
  /** The confidential VM on host-a the containers run in. */
  sourceVm: string;
  /** QEMU mode: the host namespaces (agents, bridge, guest addresses). */
  ns?: HostNamespaces;
  /** The container guest's spec (what CCM_CONTAINER_VM_SPEC names). */
  vmSpec: VmSpec;
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
  /** The key-broker's release log of a migration (as the guest owner reads it). */
  releases(migrationId: string): Promise<z.infer<typeof ReleaseLogReplySchema>['records']>;
  /** The VMs the vm-lifecycle provisioned on host-b for a migration (`ccm vms --host host-b`). */
  provisionedVms(migrationId: string): Promise<RegistryVm[]>;
  /**
   * `ccm migrate <workload> --from host-a --to host-b --idempotency-key <key>` with the built CLI
   * (`--follow`, `--vm <source VM>` when asked).
   */
  migrate(workload: string, key: string, o?: { follow?: boolean; vm?: string }): Promise<CcmRun>;
  /** Runs a counting container in the source VM and gives it an overlay /32; returns its address. */
  runContainer(id: string, pages: number, dirtyPagesPerSec: number): Promise<string>;
  counter(vmId: string, id: string): Promise<number>;
  /** The pid of the guest-agent inside a VM (read from its sim VM's run dir), if it runs. */
  guestPid(vmId: string): number | undefined;
  /** Every VM (both hosts) whose guest-agent process is alive. */
  liveGuests(): string[];
  /** Where `workload` runs (state `running`), over every live guest-agent's `list-containers`. */
  runningCopies(workload: string): Promise<Array<{ vmId: string; counter: number }>>;
  /**
   * Destroys every VM still running on `host` (the operator's `destroy` to its host-agent) and waits
   * until the vm-lifecycle no longer counts them against the host's capacity: a sim host offers as
   * many vCPUs as the machine has cores, and each container migration launches a new VM.
   */
  destroyVmsOn(host: string): Promise<void>;
  close(): Promise<void>;
}

/** A VM as `ccm vms --json` lists it. */
export interface RegistryVm {
  hostId: string;
  vmId: string;
  desired?: string;
  observed?: string;
  provisionedBy?: string;
}

export async function startRealContainerStack(
  workloads: readonly string[],
  opts: RealStackOptions = {},
): Promise<RealContainerStack> {
  if (opts.qemu && opts.supervised) throw new Error('the QEMU mode runs no supervisor');
  const ns = opts.qemu
    ? await startHostNamespaces([...HOSTS], qemuAgentEnv, {
        guestBridge: opts.qemu.bridge,
        // nats-server drops a killed guest's connection within ~20 s (not 4 min), so commands to it
        // fail at once instead of waiting out their timeout
        natsPing: { intervalS: 5, max: 3 },
      })
    : undefined;
  const stack = ns?.stack ?? (await startTestStack({ hostIds: [...HOSTS] }));
  const work = await mkdtemp(join(tmpdir(), 'ccm-real-saga-'));
  /** The hosts' run dirs (the sim's under `work`, the namespaces' their own). */
  const runDirs = HOSTS.map((h) => ns?.hosts[h].runDir ?? join(work, h));
  /** A VM's pid file that says its guest-agent runs: the sim's guest-agent, else the QEMU process. */
  const alive = ns ? 'vm.pid' : 'guest-agent.pid';
  const services = new Map<string, ServiceProcess>();
  const supervisorLog: string[] = [];
  const supervisor = opts.supervised
    ? new Supervisor(join(work, 'state'), (m) => supervisorLog.push(m))
    : undefined;
  /** Under the supervisor: each service's slot in `supervisor.services` (restarts replace in place). */
  const slots = new Map<string, number>();
  let operator: OperatorClient | undefined;
  // Supervised services run in their own process groups: a signal to the test's group (a cancelled
  // run) does not reach them, so they and the sim VMs are killed here before the signal takes effect.
  const onSignal = (sig: NodeJS.Signals) => {
    for (const p of supervisor?.services ?? []) if (p?.child.pid) signal(p.child.pid, 'SIGKILL');
    for (const pid of simVmPids(runDirs)) signal(pid, 'SIGKILL');
    process.kill(process.pid, sig);
  };
  const signals = ['SIGTERM', 'SIGINT'] as const;
  if (supervisor) for (const sig of signals) process.once(sig, onSignal);
  const close = async () => {
    for (const sig of signals) process.removeListener(sig, onSignal);
    await operator?.close().catch(() => undefined);
    await supervisor?.stop();
    // The coordinator first (no new commands), then the rest; VMs outlive host-agents: end them too.
    await services.get('saga-coordinator')?.stop();
    await Promise.allSettled([...services.values()].map((p) => p.stop()));
    if (ns)
      await ns.close(); // the agents, their QEMU processes, the stack, the namespaces
    else {
      for (const pid of simVmPids(runDirs)) signal(pid, 'SIGKILL');
      await stack.stop();
    }
    await rm(work, { recursive: true, force: true });
  };
  try {
    const trust = await loadTrustStore(stack.keysDir);
    if (supervisor) await mkdir(join(work, 'logs'), { recursive: true });
    // The container guest image: what CCM_CONTAINER_VM_SPEC names and the owner's policy accepts.
    const guest = opts.qemu ? await qemuContainerGuest(ns!, opts.qemu, work) : await simContainerGuest(work);
    const { spec } = guest;
    const base = (extra: Record<string, string>) => stack.env({ CCM_LOG_LEVEL: 'log', ...extra });
    const startOne = async (
      name: string,
      service: Parameters<typeof startServiceProcess>[0],
      env: Record<string, string>,
    ) => {
      const all = base({ CCM_INSTANCE_ID: `${name.replace('#', '-')}-e2e`, ...env });
      if (!supervisor) return void services.set(name, await startServiceProcess(service, all));
      // add() takes the next slot at once (host-agents start side by side)
      slots.set(name, supervisor.services.length);
      await supervisor.add({ name, app: service, env: all, logFile: join(work, 'logs', `${name}.log`) });
    };
    const start = async (
      name: string,
      service: Parameters<typeof startServiceProcess>[0],
      env: Record<string, string>,
    ) => {
      const n = (SCALABLE as readonly string[]).includes(service) ? (opts.replicas ?? 1) : 1;
      for (let i = 1; i <= n; i++) await startOne(i === 1 ? name : `${name}#${i}`, service, env);
    };
    await start('key-broker', 'key-broker', {});
    if (ns) {
      // Each host leases its guests addresses from its half of the segment's guest addresses.
      const net = ns.bridgeAddr.split('.').slice(0, 3).join('.');
      HOSTS.forEach((h, i) =>
        Object.assign(ns.hosts[h].env, {
          CCM_SEV_LAB_DIR: guest.labDir,
          CCM_GUEST_NET: `bridge=${opts.qemu!.bridge},cidr=${net}.0/24,gateway=${ns.bridgeAddr},range=${ns.guestAddr(i * 50)}-${ns.guestAddr(i * 50 + 49)}`,
        }),
      );
      await Promise.all(HOSTS.map((h) => ns.startAgent(h)));
    } else
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
    await start('vm-lifecycle', 'vm-lifecycle', {
      CCM_CONTAINER_VM_SPEC: JSON.stringify(spec),
      ...(ns ? QEMU_LIFECYCLE_ENV : {}),
    });
    await start('container-checkpoint', 'container-checkpoint', {
      CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: '16',
      CCM_CHECKPOINT_MAX_ROUNDS: '4',
    });
    await start('network-overlay', 'network-overlay', { CCM_OVERLAY_DRIVER: 'sim' });
    await start('saga-coordinator', 'saga-coordinator', {
      ...(ns ? QEMU_COORDINATOR_ENV : COORDINATOR_ENV),
      ...opts.coordinatorEnv,
    });

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
    // QEMU mode: a launch or a followed migration waits for TCG guests to boot (minutes)
    const cli = (args: string[]) =>
      ccm(
        [...args, '--nats-url', stack.nats.url, '--keys-dir', stack.keysDir],
        {},
        undefined,
        ns ? 900_000 : 60_000,
      );
    const launch = await cli([
      'vm',
      'launch',
      '--host',
      'host-a',
      ...workloads.flatMap((w) => ['--workload', w]),
      '--overlay',
      OVERLAY,
      '--json',
      ...(ns ? ['--timeout-ms', '480000'] : []),
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
    const ccmJson = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
      // A loaded machine may make the CLI's NATS connect time out (exit 3, UNAVAILABLE): ask again.
      const r = await pollUntil(
        `ccm ${args.join(' ')}`,
        () => cli([...args, '--json']),
        (x) => x.code !== 3,
        { timeoutMs: 60_000 },
      );
      if (r.code !== 0) throw new Error(`ccm ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    };
    return {
      stack,
      work,
      trust,
      services,
      supervisor,
      supervisorLog,
      pidOf: (name) => {
        const slot = slots.get(name);
        if (supervisor && slot !== undefined) return supervisor.services[slot]?.child.pid;
        return services.get(name)?.child.pid;
      },
      sourceVm,
      ...(ns ? { ns } : {}),
      vmSpec: spec,
      guests,
      operator,
      ccm: cli,
      ccmJson,
      migrate: (workload, key, o = {}) =>
        cli([
          'migrate',
          workload,
          '--from',
          'host-a',
          '--to',
          'host-b',
          ...(o.follow ? ['--follow'] : []),
          ...(o.vm ? ['--vm', o.vm] : []),
          '--idempotency-key',
          key,
        ]),
      send,
      releases: async (migrationId) =>
        (
          await send(
            'guest-owner',
            keyBrokerSubject(KEY_BROKER_VERBS.releaseLog),
            { migrationId },
            ReleaseLogReplySchema,
          )
        ).records,
      provisionedVms: async (migrationId) =>
        (await ccmJson<{ vms: RegistryVm[] }>(['vms', '--host', 'host-b'])).vms.filter(
          (v) => v.provisionedBy === migrationId,
        ),
      async runContainer(id, pages, dirtyPagesPerSec) {
        // a runc container's first start in a TCG guest takes a while
        await guests.send(sourceVm, 'run-container', { id, pages, dirtyPagesPerSec }, { timeoutMs: 300_000 });
        await pollUntil(
          `${id} counts at the source`,
          () => counter(sourceVm, id),
          (c) => c > 2,
          { timeoutMs: ns ? 120_000 : 30_000 },
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
        for (const dir of runDirs) {
          const f = join(dir, 'vms', vmId, 'guest-agent.pid');
          if (existsSync(f)) return Number(readFileSync(f, 'utf8').trim());
        }
        return undefined;
      },
      liveGuests: () => liveGuests(runDirs, alive),
      async runningCopies(workload) {
        // Every live guest-agent must answer (one that is busy or restarting is asked again).
        const lists = await pollUntil(
          `every guest-agent lists its containers`,
          () =>
            Promise.all(
              liveGuests(runDirs, alive).map(async (vmId) => {
                const r = await guests.send(vmId, 'list-containers', {}, { timeoutMs: 3_000 }).catch(() => {
                  // a VM destroyed while it was asked is not an answer missing
                  return liveGuests(runDirs, alive).includes(vmId) ? undefined : { containers: [] };
                });
                return (
                  r && {
                    vmId,
                    containers: r.containers as Array<{ id: string; state: string; counter: number }>,
                  }
                );
              }),
            ),
          (all) => all.every(Boolean),
          { timeoutMs: 30_000 },
        );
        return lists.flatMap((l) =>
          l!.containers
            .filter((c) => c.id === workload && c.state === 'running')
            .map((c) => ({ vmId: l!.vmId, counter: c.counter })),
        );
      },
      async destroyVmsOn(host) {
        // What the vm-lifecycle counts against a host (apps/vm-lifecycle registry TAKES_CAPACITY).
        const takes = (v: RegistryVm) =>
          v.hostId === host && (v.observed ? !isFinalVmPhase(v.observed) : v.desired === 'Running');
        const vms = async () =>
          (await ccmJson<{ vms: RegistryVm[] }>(['vms', '--host', host])).vms.filter(takes);
        for (const vm of await vms())
          await send(
            'operator',
            subjects.hostCmd(host, 'destroy'),
            { vmId: vm.vmId, reason: 'e2e: capacity for the next migration' },
            z.object({}).loose(),
          ).catch(() => undefined); // one the host-agent does not know: the poll below says so
        await pollUntil(`no VM takes ${host}'s capacity`, vms, (v) => v.length === 0, { timeoutMs: 60_000 });
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Each VM's pid files under the hosts' run dirs (`guest-agent.pid`, `vm.pid`) that exist. */
function vmPidFiles(
  runDirs: readonly string[],
  files: readonly string[],
): Array<{ vmId: string; pid: number }> {
  const out: Array<{ vmId: string; pid: number }> = [];
  for (const dir of runDirs) {
    const vms = join(dir, 'vms');
    if (!existsSync(vms)) continue;
    for (const vmId of readdirSync(vms)) {
      for (const f of files) {
        const p = join(vms, vmId, f);
        if (existsSync(p)) out.push({ vmId, pid: Number(readFileSync(p, 'utf8').trim()) });
      }
    }
  }
  return out;
}

/** The VMs under the hosts' run dirs whose guest-agent (`file`: its pid file, or its VM's) is alive. */
function liveGuests(runDirs: readonly string[], file: string): string[] {
  return vmPidFiles(runDirs, [file])
    .filter((g) => g.pid > 0 && signal(g.pid, 0))
    .map((g) => g.vmId);
}

/** Every sim VM and guest-agent pid written under the hosts' run dirs. */
function simVmPids(runDirs: readonly string[]): number[] {
  return vmPidFiles(runDirs, ['guest-agent.pid', 'vm.pid']).map((g) => g.pid);
}

/** The QEMU mode's host-agents: qemu driver under TCG, attested launches on the software secure processor. */
const qemuAgentEnv = {
  CCM_HYPERVISOR: 'qemu',
  CCM_QEMU_ACCEL: 'tcg',
  CCM_SEV: 'emulated',
  CCM_VM_START_TIMEOUT_MS: '60000',
  CCM_HEARTBEAT_INTERVAL_MS: '500',
};
/** A TCG guest boots and starts its guest-agent in about a minute, slower on a loaded machine. */
const QEMU_LIFECYCLE_ENV = { CCM_GUEST_UP_TIMEOUT_MS: '360000', CCM_PROVISION_CALL_TIMEOUT_MS: '120000' };
/** The coordinator's real clocks (provision-target 5 min: a TCG boot), quick ticks. */
const QEMU_COORDINATOR_ENV = { CCM_SAGA_TICK_MS: '100', CCM_OUTBOX_POLL_MS: '50' };

/**
 * The QEMU mode's container guest: the lab of the hosts' software secure processors, and ONE spec for
 * every VM (what CCM_CONTAINER_VM_SPEC names): the image's kernel, initrd and root disk, one app disk
 * with the guest-agent (runc driver), the stack's keys and the environment every guest shares, the run
 * script, a NIC on the guest bridge with no MAC. What is per VM (its id, address) the host-agent passes
 * in fw_cfg `opt/ccm/vm`, so the measured command line and the owner's launch digest are the same for all.
 */
async function qemuContainerGuest(
  ns: HostNamespaces,
  q: QemuGuests,
  work: string,
): Promise<SimContainerGuest> {
  const labDir = join(work, 'lab');
  const lab = await LabAuthority.create(labDir, { rsaBits: 2048 });
  const spec = await sharedContainerGuest(ns.stack, q.image, {
    bridge: q.bridge,
    work,
    memoryMiB: q.memoryMiB ?? 512,
    env: { CCM_GUEST_DRIVER: 'runc', CCM_GUEST_STREAM_TIMEOUT_MS: '120000' },
  });
  return { lab, labDir, spec: VmSpecSchema.parse(spec) };
}

export function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}
