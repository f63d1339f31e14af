import { type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DescribeReplySchema,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LaunchReplySchema,
  migrationIdFor,
  PutPolicyReplySchema,
  subjects,
  type MigrationDetail,
  type SignerName,
  type VmView,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { connectNats, signedRequest } from '@ccm/messaging';
import { findQemuBinary } from '@ccm/qmp';
import { LabAuthority, labPin } from '@ccm/sev-emulator';
import {
  bridgedHostsUnavailable,
  counterReaches,
  counters,
  createBridgedHosts,
  lastOf,
  pollUntil,
} from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ensureGuestImage, tinyGuestSpec } from '../guest-image/guest-image.js';
import { type LocalStack } from '../stack/stack.js';
import { ccmRunner } from './ccm-runner.js';
import { type QemuContainerSetup } from './qemu-container.js';

const SOURCE = 'host-a';
const TARGET = 'host-b';

/** Why this machine cannot run the VM demo (QEMU hosts in network namespaces), or undefined. */
export function qemuVmUnavailable(): string | undefined {
  if (!findQemuBinary()) return 'qemu-system-x86_64 is not installed (tools/dev.sh setup installs it)';
  return bridgedHostsUnavailable();
}

/** What the VM flow needs around the local stack: the hosts' namespaces (as the container flow's) and the lab. */
export interface QemuVmSetup extends Pick<
  QemuContainerSetup,
  'net' | 'listen' | 'hostNetns' | 'hostEnv' | 'close'
> {
  lab: LabAuthority;
}

/**
 * The VM saga's hosts, as its e2e runs them: two network namespaces on one bridge, each with a
 * host-agent on the qemu driver (TCG) whose VMs send and take migration streams on that host's address,
 * both with the software secure processor of one lab (the key-broker attests the target's chain to it).
 */
export async function qemuVmSetup(workDir: string, runRoot: string): Promise<QemuVmSetup> {
  await mkdir(workDir, { recursive: true });
  const lab = await LabAuthority.create(join(workDir, 'lab'), { rsaBits: 2048 });
  const net = createBridgedHosts([SOURCE, TARGET]);
  return {
    net,
    lab,
    listen: { host: net.bridgeAddr, clientCidrs: [net.cidr] },
    hostNetns: (host) => net.hosts[host].ns,
    hostEnv: (host) => ({
      CCM_RUN_DIR: join(runRoot, host),
      // its namespace's address: migration streams and the demo's /health read
      CCM_MIGRATION_HOST: net.hosts[host].addr,
      CCM_HTTP_HOST: net.hosts[host].addr,
      CCM_HYPERVISOR: 'qemu',
      CCM_QEMU_ACCEL: 'tcg',
      CCM_SEV: 'emulated',
      CCM_SEV_LAB_DIR: join(workDir, 'lab'),
      CCM_MIGRATION_POLL_MS: '50',
      CCM_PROGRESS_INTERVAL_MS: '200',
    }),
    close: () => net.destroy(),
  };
}

export interface VmDemoContext {
  stack: LocalStack;
  setup: Pick<QemuVmSetup, 'lab'>;
  say: (m: string) => void;
  /** The demo stops the `ccm` it runs when it is stopped. */
  children: Set<ChildProcess>;
  /** Kill every QEMU host-b starts for the incoming guest: the migration must then fail. */
  failDestination: boolean;
}

/**
 * Live-migrates a running QEMU guest from host-a to host-b through the saga-coordinator, with the
 * product's verbs: the guest owner's policy for the VM (the lab root, migration to host-b), the VM
 * launched on host-a's agent (as the VM saga's e2e does: the tiny guest has no guest-agent, so
 * vm-lifecycle's attested launch does not apply), then `ccm migrate <vm> --kind vm --follow`; QEMU's
 * figures are read back from the source's agent, the guest's counter at host-b from its serial console,
 * the timeline from `ccm audit replay`.
 */
export async function demoVmMigration(ctx: VmDemoContext): Promise<void> {
  const { stack, say, children } = ctx;
  const trust = await loadTrustStore(stack.keysDir);
  const conns: NatsConnection[] = [];
  const as = async (signer: SignerName) => {
    const identity = await loadIdentity(stack.keysDir, signer);
    const nc = await connectNats([stack.natsUrl], identity, `ccm-demo-${signer}`);
    conns.push(nc);
    return <S extends z.ZodType>(subject: string, data: unknown, reply: S) =>
      signedRequest(nc, identity, trust, subject, data, reply, {
        idempotencyKey: randomUUID(),
        timeoutMs: 90_000,
      });
  };
  const ccm = ccmRunner(stack, say, children);
  try {
    const operator = await as('operator');
    const host = <S extends z.ZodType>(h: string, verb: string, data: unknown, reply: S) =>
      operator(subjects.hostCmd(h, verb), data, reply);
    const describe = (h: string, vmId: string) => host(h, 'describe', { vmId }, DescribeReplySchema);
    const vmOn = async (h: string, vmId: string): Promise<VmView | undefined> =>
      (await describe(h, vmId)).vms.find((v) => v.vmId === vmId);
    for (const h of [SOURCE, TARGET]) {
      const p = (await host(h, 'platform', {}, z.record(z.string(), z.unknown()))) as {
        capabilities: {
          driver: string;
          accelerator: string;
          hypervisor?: { banner?: string; binary?: string };
        };
      };
      const q = p.capabilities.hypervisor;
      say(
        `   ${h}: ${p.capabilities.driver} (${p.capabilities.accelerator}), ${q?.banner ?? q?.binary ?? 'no QEMU'}`,
      );
    }
    const image = await ensureGuestImage();
    say(
      `   guest image ${image.cached ? 'from cache' : `built in ${(image.elapsedMs / 1000).toFixed(1)} s`}: Debian kernel + busybox, a workload printing COUNTER n`,
    );
    const spec = tinyGuestSpec(image, { memoryMiB: 256, dirtyMiB: 32, dirtyRateMBps: 8 });
    const vmId = `demo-vm-${Date.now().toString(36)}`;

    const owner = await as('guest-owner');
    await owner(
      keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
      {
        policy: {
          workloadClass: 'demo-vms',
          environment: 'lab',
          workloads: [vmId],
          trustedRoots: {
            amd: [],
            lab: [{ name: 'lab', generation: 'milan', arkBodySha256: labPin(ctx.setup.lab) }],
          },
          sev: { minFirmware: { apiMajor: 0, apiMinor: 0 }, guestPolicy: 0x1, launchDigests: [] },
          migration: { allowed: true, targetHosts: [TARGET] },
        },
        expectedVersion: 0,
      },
      PutPolicyReplySchema,
    );
    say(
      `   the guest owner puts its policy for ${vmId}: the lab root endorsing both hosts, migration to ${TARGET}`,
    );

    const { vm: source } = await host(SOURCE, 'launch', { vmId, spec }, LaunchReplySchema);
    const srcLog = join(source.runDir, 'serial.log');
    await counterReaches(srcLog, 2, 90_000);
    say(
      `   ${vmId} runs on ${SOURCE} (${source.driver}, pid ${source.pid}); its counter is at ${lastOf(await counters(srcLog))}`,
    );

    // --fail-destination: every QEMU host-b starts for the incoming guest is killed as soon as it runs.
    let migrating = true;
    const killer = (async () => {
      const killed = new Set<number>();
      while (ctx.failDestination && migrating) {
        const pid = (await vmOn(TARGET, vmId).catch(() => undefined))?.pid;
        if (pid !== undefined && !killed.has(pid)) {
          killed.add(pid);
          try {
            process.kill(pid, 'SIGKILL');
            say(`   --fail-destination: killed ${TARGET}'s QEMU (pid ${pid}) as it waits for the stream`);
          } catch {
            // already gone
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const key = `demo-${randomUUID()}`;
    const id = migrationIdFor(key);
    const argv = ['migrate', vmId, '--kind', 'vm', '--from', SOURCE, '--to', TARGET, '--follow'];
    say(`\n   $ ccm ${argv.join(' ')}`);
    const run = await ccm([...argv, '--idempotency-key', key], true).finally(() => (migrating = false));
    await killer;
    const shown = await ccm(['migration', id, '--json']);
    const detail = shown.code === 0 ? (JSON.parse(shown.stdout) as MigrationDetail) : undefined;
    if (run.code !== 0 || detail?.phase !== 'Succeeded')
      throw new Error(
        `migration ${id} ended ${detail?.phase ?? `with ccm exit ${run.code}`}: ${detail?.reason ?? run.stderr.trim()}`,
      );

    const moved = (await describe(SOURCE, vmId)).migrations.find((t) => t.migrationId === id);
    const f = moved?.figures;
    const target = await pollUntil(
      `${vmId} running on ${TARGET}`,
      () => vmOn(TARGET, vmId),
      (v) => v?.phase === 'Running',
      { timeoutMs: 30_000 },
    );
    const before = lastOf(await counters(srcLog));
    const after = await counterReaches(join(target!.runDir, 'serial.log'), before + 2, 30_000);
    const srcNow = await vmOn(SOURCE, vmId);

    // `ccm audit replay` rebuilds the migration from the signed events alone, once the outcome is in.
    const timeline = await pollUntil(
      `ccm audit replay ${id} to show the outcome`,
      () => ccm(['audit', 'replay', id]),
      (r) => /^outcome: /m.test(r.stdout),
      { timeoutMs: 30_000 },
    );
    say(`\n   $ ccm audit replay ${id}`);
    const [replay] = timeline.stdout.split('\nevents (signature, chain link):'); // not the signature list
    for (const l of replay.trimEnd().split('\n')) say(`   │ ${l.length > 160 ? `${l.slice(0, 159)}…` : l}`);

    say(
      `\n   result: ${detail.phase} (rebuilt from the audit stream alone: ${/^outcome: (\S+)/m.exec(replay)?.[1] ?? '?'})`,
    );
    if (f)
      say(
        `   QEMU: total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, setup ${f.setupTimeMs} ms, ${(f.transferredBytes / 1e6).toFixed(1)} MB in ${f.passes} passes`,
      );
    say(
      `   the guest's counter: last ${before} on ${SOURCE}, then ${after.slice(0, 3).join(', ')} … on ${TARGET} (verified there); the source is ${srcNow?.phase ?? 'gone'}`,
    );
  } finally {
    await Promise.allSettled(conns.map((nc) => nc.close()));
  }
}
