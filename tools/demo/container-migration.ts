import { type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LaunchVmReplySchema,
  migrationIdFor,
  PutPolicyReplySchema,
  ReleaseLogReplySchema,
  subjects,
  type MigrationDetail,
  type OwnerPolicyInput,
  type ServiceName,
  type SignerName,
  type VmSpec,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { connectNats, signedRequest } from '@ccm/messaging';
import { defaultSeabios, killVmProcesses } from '@ccm/qmp';
import { directBootLaunchDigest, encodeAmdCertificateBody } from '@ccm/sev';
import { LabAuthority, simSnpMeasurement } from '@ccm/sev-emulator';
import { pollUntil } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { LineClient } from '../guest-image/line-client.js';
import { type LocalStack } from '../stack/stack.js';
import { ccmRunner } from './ccm-runner.js';
import { startClientNode, type ClientNode, type ClientNodeSpec } from './overlay-client.js';

const HOSTS = ['host-a', 'host-b'] as const;
const OVERLAY = 'ov-demo';
const OVERLAY_CIDR = '10.77.0.0/24';
/** The container's TCP line service (each line it reads is answered with its count). */
const SERVICE_PORT = 8080;
/** The sim guest image whose SNP measurement the owner's policy accepts. */
export const GUEST_IMAGE = 'ccm-guest';
const WORKLOAD = 'web-1';

/** A signed request as one of the stack's signers (the guest owner, the operator). */
export type SendAs = <S extends z.ZodType>(
  signer: SignerName,
  subject: string,
  data: unknown,
  reply: S,
) => Promise<z.infer<S>>;

/** The container guest of the sim flow: a lab's software secure processor and the image vm-lifecycle launches. */
export interface SimContainerGuest {
  lab: LabAuthority;
  labDir: string;
  /** What CCM_CONTAINER_VM_SPEC names (random kernel and initrd: the sim VM only measures them). */
  spec: VmSpec;
}

export async function simContainerGuest(workDir: string): Promise<SimContainerGuest> {
  await mkdir(workDir, { recursive: true });
  const labDir = join(workDir, 'lab');
  const lab = await LabAuthority.create(labDir, { rsaBits: 2048 });
  const spec: VmSpec = {
    memoryMiB: 32,
    cpus: 1,
    kernel: join(workDir, 'vmlinuz'),
    initrd: join(workDir, 'initrd'),
    cmdline: 'console=ttyS0 ccm.guest=container',
  };
  await writeFile(spec.kernel!, randomBytes(64 * 1024));
  await writeFile(spec.initrd!, randomBytes(16 * 1024));
  return { lab, labDir, spec };
}

/** The guest owner's policy for it: the lab root, the guest's SEV and SNP launch digests, the hosts. */
export async function simContainerPolicy(
  g: SimContainerGuest,
  workloads: readonly string[],
  hosts: readonly string[],
): Promise<OwnerPolicyInput> {
  return {
    workloadClass: 'web',
    environment: 'lab',
    workloads: [...workloads],
    trustedRoots: {
      amd: [],
      lab: [
        {
          name: 'ccm-lab',
          generation: 'milan',
          arkBodySha256: createHash('sha256').update(encodeAmdCertificateBody(g.lab.ark)).digest('hex'),
          arkX509Sha256: [...g.lab.trustAnchors().snpTrustedArks.keys()][0],
        },
      ],
    },
    sev: {
      minFirmware: { apiMajor: 0, apiMinor: 0 },
      guestPolicy: 0x1,
      launchDigests: [
        directBootLaunchDigest(await readFile(defaultSeabios()), {
          kernel: await readFile(g.spec.kernel!),
          initrd: await readFile(g.spec.initrd!),
          cmdline: g.spec.cmdline,
        }).toString('hex'),
      ],
    },
    snp: { launchDigests: [simSnpMeasurement(GUEST_IMAGE).toString('hex')] },
    migration: { allowed: true, targetHosts: [...hosts] },
  };
}

/** With the services up: the owner's policy put, every host live at the vm-lifecycle, the overlay made. */
export async function prepareSimContainerFlow(
  send: SendAs,
  policy: OwnerPolicyInput,
  hosts: readonly string[],
  overlay: { overlayId: string; cidr: string },
): Promise<void> {
  await send(
    'guest-owner',
    keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
    { policy, expectedVersion: 0 },
    PutPolicyReplySchema,
  );
  await hostsLiveAndOverlay(send, hosts, overlay);
}

/** Every host live at the vm-lifecycle, then the overlay made (the operator's part of the preparation). */
export async function hostsLiveAndOverlay(
  send: SendAs,
  hosts: readonly string[],
  overlay: { overlayId: string; cidr: string },
): Promise<void> {
  await pollUntil(
    'the vm-lifecycle to see every host live',
    () =>
      send(
        'operator',
        subjects.cmd('vm-lifecycle', 'list-hosts'),
        {},
        z.object({ hosts: z.array(z.object({ hostId: z.string(), live: z.boolean() }).loose()) }).loose(),
      ),
    (r) => hosts.every((h) => r.hosts.some((x) => x.hostId === h && x.live)),
    { timeoutMs: 30_000 },
  );
  await send('operator', subjects.cmd('network-overlay', 'create-overlay'), overlay, z.unknown());
}

/** What the sim container flow needs before the stack starts: the guest, each service's settings. */
export interface SimContainerSetup {
  guest: SimContainerGuest;
  hostEnv(host: string): Record<string, string>;
  serviceEnv(app: ServiceName): Record<string, string>;
}

/**
 * The sim drivers' configuration of the container flow: host-agents on the simulated hypervisor with
 * the software secure processor of one lab, each launched VM starting its guest-agent inside; the
 * vm-lifecycle's container guest image; container-checkpoint pre-copying in small rounds; the
 * overlay's sim driver.
 */
export async function simContainerSetup(workDir: string, runRoot: string): Promise<SimContainerSetup> {
  const guest = await simContainerGuest(workDir);
  const byApp: Partial<Record<ServiceName, Record<string, string>>> = {
    'vm-lifecycle': { CCM_CONTAINER_VM_SPEC: JSON.stringify(guest.spec) },
    'container-checkpoint': { CCM_CHECKPOINT_DIRTY_THRESHOLD_PAGES: '16', CCM_CHECKPOINT_MAX_ROUNDS: '4' },
    'network-overlay': { CCM_OVERLAY_DRIVER: 'sim' },
  };
  return {
    guest,
    hostEnv: (host) => ({
      CCM_RUN_DIR: join(runRoot, host),
      CCM_HYPERVISOR: 'sim',
      CCM_SEV: 'emulated',
      CCM_SEV_LAB_DIR: guest.labDir,
      CCM_HEARTBEAT_INTERVAL_MS: '500',
      CCM_SIM_GUEST_AGENT: 'true',
      CCM_SIM_GUEST_IMAGE: GUEST_IMAGE,
    }),
    serviceEnv: (app) => byApp[app] ?? {},
  };
}

/** Ends every sim VM and the guest-agent inside it under the hosts' run dirs (VMs outlive their agent). */
export async function stopSimGuests(runRoot: string): Promise<number[]> {
  const ended: number[] = [];
  for (const host of existsSync(runRoot) ? readdirSync(runRoot) : []) {
    const vms = join(runRoot, host, 'vms');
    for (const vm of existsSync(vms) ? readdirSync(vms) : []) {
      const f = join(vms, vm, 'guest-agent.pid');
      const pid = existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) : 0;
      if (pid > 0 && pidKill(pid)) ended.push(pid);
    }
  }
  return [...ended, ...(await killVmProcesses(runRoot))];
}

function pidKill(pid: number): boolean {
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

export interface ContainerDemoContext {
  stack: LocalStack;
  /** With `client`, the overlay is real and a TCP client outside both guests talks to the container. */
  setup: Pick<SimContainerSetup, 'guest'> & { client?: ClientNodeSpec };
  say: (m: string) => void;
  /** Real QEMU guests (runc and CRIU inside): boots and first container starts take minutes under TCG. */
  real?: boolean;
  /** The demo stops the `ccm` it runs when it is stopped. */
  children: Set<ChildProcess>;
}

const ms = (x: number | null | undefined) =>
  x === undefined
    ? 'not measured'
    : x === null
      ? 'unknown (the target did not answer in time)'
      : `${x.toFixed(0)} ms`;
const mib = (b: number) => `${(b / (1 << 20)).toFixed(2)} MiB`;

/**
 * The container migration on the sim drivers, with the product's verbs only: the guest owner's
 * policy, `ccm vm launch --overlay`, a counting container run by the guest-agent inside the VM, its
 * overlay /32, then `ccm migrate --follow`; the figures are read back with `ccm migration`, the key
 * release from the guest owner's release log, and the timeline from `ccm audit replay`.
 */
export async function demoContainerMigration(ctx: ContainerDemoContext): Promise<void> {
  const { stack, setup, say, children } = ctx;
  /** Waits for a guest: a TCG boot, a runc container's first start. */
  const slow = ctx.real ? { launchMs: 480_000, guestMs: 300_000, countMs: 120_000 } : undefined;
  const trust = await loadTrustStore(stack.keysDir);
  const conns = new Map<SignerName, NatsConnection>();
  const as = async (signer: SignerName) => {
    const identity = await loadIdentity(stack.keysDir, signer);
    let nc = conns.get(signer);
    if (!nc) conns.set(signer, (nc = await connectNats([stack.natsUrl], identity, `ccm-demo-${signer}`)));
    return { nc, identity };
  };
  const send = async <S extends z.ZodType>(
    signer: SignerName,
    subject: string,
    data: unknown,
    reply: S,
    timeoutMs = 90_000,
  ) => {
    const { nc, identity } = await as(signer);
    return signedRequest(nc, identity, trust, subject, data, reply, {
      idempotencyKey: randomUUID(),
      timeoutMs,
    });
  };
  /** The built ccm; `show` streams its output into the demo's, indented. */
  const ccm = ccmRunner(stack, say, children);
  let client: ClientNode | undefined;
  let tcp: LineClient | undefined;
  let tcpLocal = '';
  const ccmJson = async <T>(args: string[]): Promise<T> => {
    const r = await ccm([...args, '--json']);
    if (r.code !== 0) throw new Error(`ccm ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as T;
  };

  try {
    say(
      `   the guest owner puts its policy: lab root, the container guest's launch digests, ${HOSTS.join(' ↔ ')}`,
    );
    await prepareSimContainerFlow(send, await simContainerPolicy(setup.guest, [WORKLOAD], HOSTS), HOSTS, {
      overlayId: OVERLAY,
      cidr: OVERLAY_CIDR,
    });
    say(
      `   overlay ${OVERLAY} ${OVERLAY_CIDR} created (${setup.client ? 'guest driver: kernel WireGuard inside each guest' : 'sim driver'})`,
    );

    const launch = await ccmJson<unknown>([
      'vm',
      'launch',
      '--host',
      'host-a',
      '--workload',
      WORKLOAD,
      '--overlay',
      OVERLAY,
      ...(slow ? ['--timeout-ms', String(slow.launchMs)] : []),
    ]);
    const source = LaunchVmReplySchema.parse(launch);
    say(
      `   ccm vm launch --host host-a --overlay ${OVERLAY}: ${source.vmId}, attested launch ${source.launchSessionId} on the software secure processor; admitted at ${source.overlay?.nodeIp ?? '?'} (release log #${source.overlay?.decision ?? '?'})`,
    );

    // The guest-agent inside each VM serves the operator's signed container verbs.
    const guest = (vmId: string, verb: string, data: unknown) =>
      send(
        'operator',
        subjects.guestCmd(vmId, verb),
        data,
        z.record(z.string(), z.unknown()),
        slow?.guestMs ?? 30_000,
      );
    const counter = async (vmId: string) => Number((await guest(vmId, 'describe', { id: WORKLOAD })).counter);
    if (setup.client) {
      client = await startClientNode(stack, (await as('operator')).nc, send, OVERLAY, setup.client, children);
      say(
        `   client node ${client.vmId} (a guest-agent in the root namespace with its own WireGuard interface) admitted at ${client.nodeIp}, on a statement the demo signs as the key-broker: it is no VM and has no evidence`,
      );
    }
    // The /32 first: with the real overlay the container's own network takes it from the guest's interface.
    const { ip } = await send(
      'operator',
      subjects.cmd('network-overlay', 'assign-workload'),
      { overlayId: OVERLAY, workloadId: WORKLOAD, vmId: source.vmId, port: SERVICE_PORT },
      z.object({ ip: z.string() }).loose(),
    );
    await guest(source.vmId, 'run-container', {
      id: WORKLOAD,
      pages: 1024,
      dirtyPagesPerSec: 1000,
      ...(setup.client ? { network: { address: ip, port: SERVICE_PORT } } : {}),
    });
    const before = await pollUntil(
      `${WORKLOAD} counts in ${source.vmId}`,
      () => counter(source.vmId),
      (c) => c > 2,
      { timeoutMs: slow?.countMs ?? 30_000 },
    );
    say(`   container ${WORKLOAD} counts in ${source.vmId} (counter ${before}); overlay /32 ${ip}`);
    if (setup.client) {
      tcp = await pollUntil(
        `${ip}:${SERVICE_PORT} accepts a connection over the overlay`,
        () => LineClient.open(ip, SERVICE_PORT),
        Boolean,
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      const conn = tcp;
      await pollUntil(
        'the container answers on the connection',
        () => conn.answers.length,
        (n) => n > 3,
        {
          timeoutMs: 60_000,
        },
      );
      tcpLocal = conn.local;
      say(
        `   TCP: ${tcpLocal} → ${ip}:${SERVICE_PORT} connected over the overlay; a line every 100 ms, each answered with the container's count (${conn.last()})`,
      );
    }

    const key = `demo-${randomUUID()}`;
    const id = migrationIdFor(key);
    const argv = [
      'migrate',
      WORKLOAD,
      '--from',
      'host-a',
      '--to',
      'host-b',
      '--follow',
      '--idempotency-key',
      key,
    ];
    const atStart = await counter(source.vmId);
    const migrateAt = performance.now();
    say(`\n   $ ccm ${argv.join(' ')}`);
    const run = await ccm(argv, true);
    if (run.code !== 0) throw new Error(`ccm migrate exited ${run.code}: ${run.stderr.trim()}`);

    const detail = await ccmJson<MigrationDetail>(['migration', id]);
    const { vms } = await ccmJson<{ vms: Array<{ vmId: string; provisionedBy?: string }> }>([
      'vms',
      '--host',
      'host-b',
    ]);
    const target = vms.find((v) => v.provisionedBy === id);
    if (!target) throw new Error(`no VM on host-b was provisioned by ${id}`);
    const landed = await counter(target.vmId);
    const later = await pollUntil(
      `${WORKLOAD} counts on in ${target.vmId}`,
      () => counter(target.vmId),
      (c) => c > landed + 2,
      { timeoutMs: slow?.countMs ?? 30_000 },
    );

    const { records } = await send(
      'guest-owner',
      keyBrokerSubject(KEY_BROKER_VERBS.releaseLog),
      { migrationId: id },
      ReleaseLogReplySchema,
    );
    const replayed = await pollUntil(
      `ccm audit replay ${id}`,
      () =>
        ccmJson<{ outcome?: { phase: string }; progress: Array<Record<string, unknown>> }>([
          'audit',
          'replay',
          id,
        ]),
      (t) => t.outcome !== undefined,
      { timeoutMs: 30_000 },
    );
    const timeline = await ccm(['audit', 'replay', id]);
    say(`\n   $ ccm audit replay ${id}`);
    // Without the per-event signature list, which `ccm audit replay` prints last.
    for (const l of timeline.stdout.split('\nevents (signature, chain link):')[0].trimEnd().split('\n'))
      say(`   │ ${l.length > 160 ? `${l.slice(0, 159)}…` : l}`);

    // The progress events carry the bytes sent so far: each round's are the difference.
    const rounds: string[] = [];
    let sent = 0;
    for (const p of replayed.progress) {
      if (typeof p['round'] !== 'number' || (p['step'] !== 'pre-copy' && p['step'] !== 'freeze-dump'))
        continue;
      const total = Number(p['bytesTransferred']);
      rounds.push(
        `${p['step'] === 'freeze-dump' ? 'final dump' : 'round'} ${String(p['round'])} ${mib(total - sent)}`,
      );
      sent = total;
    }
    const f = detail.figures ?? {};
    const kept = tcp
      ? await connectionKept(tcp, detail, migrateAt, () => counter(target.vmId), slow)
      : undefined;
    say(
      `\n   result: ${detail.phase}: ${WORKLOAD} counts on in ${target.vmId} on host-b (${atStart} in ${source.vmId} when the migration began, ${landed} on arrival, then ${later})`,
    );
    // With the real overlay the cut-over runs no observer (see docs/network-overlay.md): the
    // brownout is the one the client's connection saw.
    const brownout = kept
      ? `${kept.gapMs.toFixed(0)} ms (the client's longest gap; `
      : `${ms(f.brownoutMs)} (`;
    say(
      `   blackout ${ms(f.blackoutMs)}, frozen ${ms(f.frozenMs)}, brownout ${brownout}cut-over ${ms(f.cutOverMs)}, ${f.peersUpdated ?? 0} peers)`,
    );
    say(`   image bytes per round: ${rounds.length ? rounds.join(', ') : 'no round reported'}`);
    for (const r of records.filter((x) => x.decision.kind !== 'overlay-admission')) {
      const d = r.decision;
      const to = d.evidence
        .map(
          (e) =>
            `${e.role} ${e.vmId} (${e.platform ?? 'evidence'}${e.measurement ? `, measurement ${e.measurement.slice(0, 16)}…` : ''})`,
        )
        .join(' and ');
      say(
        `   key release #${d.seq}: ${d.granted ? `granted ${d.keyId ?? 'the migration key'}` : 'denied'} under policy v${d.policyVersion ?? '?'} to ${to}`,
      );
    }
    if (kept)
      say(
        `   TCP: the same connection ${tcpLocal} → ${ip}:${SERVICE_PORT} still talks to ${WORKLOAD}, now in ${target.vmId}: ` +
          `${kept.byA} answers by A (last count ${kept.lastA}), ${kept.byB} by B after the cut-over (counts ${kept.firstB} to ${kept.lastB}; B counts ${kept.countB}), ` +
          `${kept.between} between the freeze request and the cut-over's end; longest gap ${kept.gapMs.toFixed(0)} ms (the brownout as the client saw it); never closed`,
      );
    if (detail.phase !== 'Succeeded')
      throw new Error(`the migration ended ${detail.phase}: ${detail.reason ?? ''}`);
  } finally {
    tcp?.close();
    await client?.stop();
    await Promise.allSettled([...conns.values()].map((nc) => nc.close()));
  }
}

/** What the client's one connection saw across the migration (see {@link connectionKept}). */
interface ConnectionKept {
  byA: number;
  lastA: number;
  byB: number;
  firstB: number;
  lastB: number;
  /** The target container's own count, read after the client's last answer. */
  countB: number;
  /** Answers between the freeze request and the cut-over's end (A's, until its network is locked for the dump). */
  between: number;
  gapMs: number;
}

/**
 * The client's connection across the migration: answers before the freeze (A), after the cut-over
 * (B, whose /32 it now is; A's container is killed by commit), the longest gap since `ccm migrate`
 * began. Throws when the socket ended, when B never answered on it, when a count went back (not one
 * stream) or when the answers run ahead of B's own count (someone else answered).
 */
async function connectionKept(
  tcp: LineClient,
  detail: MigrationDetail,
  migrateAt: number,
  countB: () => Promise<number>,
  slow: { countMs: number } | undefined,
): Promise<ConnectionKept> {
  const wall = (step: string, at: 'sentAt' | 'endedAt') => {
    const a = detail.steps.find((x) => x.name === step)?.attempts.find((x) => x.kind === 'action' && x[at]);
    const t = a?.[at];
    if (!t) throw new Error(`the migration has no ${step} ${at}`);
    // On the client's clock (performance.now()).
    return Date.parse(t) - performance.timeOrigin;
  };
  const frozeAt = wall('freeze-dump', 'sentAt');
  const cutAt = wall('cut-over', 'endedAt');
  const seen = () => {
    if (tcp.ended) throw new Error(`the client's connection broke: ${tcp.ended}`);
    return tcp.answers.filter((a) => a.at > cutAt);
  };
  const after = await pollUntil('the same connection is answered from B', seen, (b) => b.length > 5, {
    timeoutMs: slow?.countMs ?? 30_000,
  });
  const own = await countB();
  const a = tcp.answers.filter((x) => x.at < frozeAt);
  const counts = tcp.answers.map((x) => x.n);
  if (!counts.every((n, i) => i === 0 || n >= counts[i - 1]))
    throw new Error(`the counts on the connection went back: not one stream (${counts.join(' ')})`);
  const last = after[after.length - 1].n;
  if (last > own) throw new Error(`the connection answered ${last}, ahead of B's own count ${own}`);
  seen();
  return {
    byA: a.length,
    lastA: a.length ? a[a.length - 1].n : 0,
    byB: after.length,
    firstB: after[0].n,
    lastB: last,
    countB: own,
    between: tcp.answers.filter((x) => x.at >= frozeAt && x.at <= cutAt).length,
    gapMs: tcp.longestGap(migrateAt),
  };
}
