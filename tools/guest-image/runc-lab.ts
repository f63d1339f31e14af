import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ContainerNetwork, subjects } from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { startQemu, type QemuProcess } from '@ccm/qmp';
import { sealMigrationKey } from '@ccm/sealing';
import {
  guestClient,
  ip,
  ipOrThrow,
  pollUntil,
  startServiceProcess,
  startTestStack,
  stepCommand,
  type GuestClient,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { buildAppDisk, shellEnvFile } from './app-disk.js';
import { containerGuestSpec, ensureContainerImage } from './container-image.js';

/**
 * Two container guests under QEMU (TCG) on a bridge in the host's namespace, each running the
 * guest-agent with the runc driver from one app disk (`env/<vm>.env` gives each its VM id and stream
 * address), reaching a test stack's NATS on the bridge's host address; apps/container-checkpoint runs
 * as its own process (the built one) against the same stack. Used by the lab int-spec
 * (qemu-container-runc-migration.int-spec.ts) and the container blackout benchmark.
 */
export interface RuncLabOptions {
  readonly repoRoot: string;
  /** Makes the bridge and tap names unique to this process (≤ 5 digits). */
  readonly tag: number;
  /** Each guest's memory. */
  readonly memoryMiB: number;
  /** container-checkpoint's environment beyond the stack's. */
  readonly checkpointEnv?: Record<string, string>;
  /** Both guest-agents' environment beyond what the lab sets. */
  readonly guestEnv?: Record<string, string>;
  /** nats-server's ping (drops a killed guest's connection sooner; see startTestStack). */
  readonly natsPing?: { intervalS: number; max: number };
  readonly log?: (line: string) => void;
}

export const LAB_HOST = '10.217.0.1';
export const LAB_GUESTS = {
  a: { vm: 'vm-runc-a', ip: '10.217.0.2', mac: '52:54:00:cc:01:0a' },
  b: { vm: 'vm-runc-b', ip: '10.217.0.3', mac: '52:54:00:cc:01:0b' },
} as const;

export class RuncLab {
  readonly bridge: string;
  readonly taps: { a: string; b: string };
  /** [A, B] once booted. */
  readonly guests: QemuProcess[] = [];
  private stackRef: TestStack | undefined;
  private client: GuestClient | undefined;
  private checkpoint: ServiceProcess | undefined;
  private work: string | undefined;
  private netMade = false;
  private coordinator: NatsConnection | undefined;

  constructor(private readonly o: RuncLabOptions) {
    this.bridge = `ccmbr${o.tag}`;
    this.taps = { a: `ccmra${o.tag}`, b: `ccmrb${o.tag}` };
  }

  get stack(): TestStack {
    if (!this.stackRef) throw new Error('the lab has not started');
    return this.stackRef;
  }

  /** The operator's guest-agent client. */
  get g(): GuestClient {
    if (!this.client) throw new Error('the lab has not started');
    return this.client;
  }

  /** QEMU processes still running (for a signal handler's SIGKILL). */
  pids(): number[] {
    return this.guests.filter((q) => !q.exitStatus()).map((q) => q.pid);
  }

  serial(i: number): Promise<string> {
    const q = this.guests[i];
    return q ? readFile(q.paths.serialLog, 'utf8').catch(() => '') : Promise.resolve('');
  }

  /** Fails with `err`'s message and the last lines of both guests' serial consoles. */
  async failWithSerials(err: unknown): Promise<never> {
    const tails = await Promise.all([0, 1].map(async (i) => (await this.serial(i)).slice(-2500)));
    throw new Error(`${(err as Error).message}\n--- serial A:\n${tails[0]}\n--- serial B:\n${tails[1]}`);
  }

  /** Removes the bridge and taps, and with the bridge every route through it (synchronous: also from a signal handler). */
  dropNet(): void {
    if (!this.netMade) return;
    for (const l of [this.taps.a, this.taps.b, this.bridge]) ip('link', 'del', l);
  }

  /**
   * A container address (n in 1..254) routed in the lab host's namespace, made from the lab's tag so
   * that two labs at once hardly meet: the overlay /32 a container serves at.
   */
  containerAddress(n: number): string {
    return `10.218.${(this.o.tag % 250) + 1}.${n}`;
  }

  /** The lab host routes `address`/32 via guest `which` (what network-overlay's move does on the overlay). */
  routeVia(address: string, which: 'a' | 'b'): void {
    ipOrThrow('route', 'replace', `${address}/32`, 'via', LAB_GUESTS[which].ip, 'dev', this.bridge);
  }

  /** Builds (or finds) the image and app disk, makes the network, starts NATS, Postgres, container-checkpoint and both guests. */
  async start(): Promise<void> {
    const log = this.o.log ?? (() => undefined);
    const image = await ensureContainerImage();
    this.work = await mkdtemp(join(tmpdir(), 'ccm-runc-lab-'));
    // The bridge exists (with the host's address) before nats-server binds to that address.
    this.netMade = true;
    ipOrThrow('link', 'add', this.bridge, 'type', 'bridge');
    ipOrThrow('addr', 'add', `${LAB_HOST}/24`, 'dev', this.bridge);
    ipOrThrow('link', 'set', this.bridge, 'up');
    for (const tap of Object.values(this.taps)) {
      ipOrThrow('tuntap', 'add', 'dev', tap, 'mode', 'tap');
      ipOrThrow('link', 'set', tap, 'master', this.bridge);
      ipOrThrow('link', 'set', tap, 'up');
    }
    const stack = await startTestStack({
      listen: { host: LAB_HOST, clientCidrs: ['10.217.0.0/24'] },
      ...(this.o.natsPing ? { natsPing: this.o.natsPing } : {}),
    });
    this.stackRef = stack;
    this.checkpoint = await startServiceProcess(
      'container-checkpoint',
      stack.env({
        CCM_INSTANCE_ID: 'checkpoint-lab',
        CCM_CHECKPOINT_GUEST_TIMEOUT_MS: '600000',
        ...this.o.checkpointEnv,
      }),
    );
    const env = (vm: string, ip: string) =>
      shellEnvFile(
        stack.env({
          CCM_VM_ID: vm,
          CCM_INSTANCE_ID: `guest-${vm}`,
          CCM_KEYS_DIR: '/run/ccm/app/keys',
          CCM_GUEST_DRIVER: 'runc',
          CCM_GUEST_STREAM_HOST: ip,
          CCM_GUEST_STREAM_TIMEOUT_MS: '600000',
          ...this.o.guestEnv,
        }),
      );
    const t0 = Date.now();
    const disk = await buildAppDisk({
      repoRoot: this.o.repoRoot,
      entry: 'dist/apps/guest-agent/src/main.js',
      out: join(this.work, 'app.ext4'),
      extra: {
        [`env/${LAB_GUESTS.a.vm}.env`]: env(LAB_GUESTS.a.vm, LAB_GUESTS.a.ip),
        [`env/${LAB_GUESTS.b.vm}.env`]: env(LAB_GUESTS.b.vm, LAB_GUESTS.b.ip),
      },
      extraDirs: { keys: stack.keysDir },
    });
    log(`app disk in ${Date.now() - t0} ms`);
    this.client = await guestClient(await stack.connectAs('operator'), stack.keysDir);
    for (const which of ['a', 'b'] as const) {
      const spec = containerGuestSpec(image, {
        runScript: join(this.o.repoRoot, 'tools/guest-image/__fixtures__/agent-run.sh'),
        appDisk: disk.path,
        tap: this.taps[which],
        ip: `${LAB_GUESTS[which].ip}/24`,
        gateway: LAB_HOST,
        mac: LAB_GUESTS[which].mac,
        hostname: LAB_GUESTS[which].vm,
        memoryMiB: this.o.memoryMiB,
      });
      this.guests.push(await startQemu({ ...spec, name: `runc-${which}`, accel: 'tcg' }));
    }
    for (const [i, vm] of [LAB_GUESTS.a.vm, LAB_GUESTS.b.vm].entries()) {
      await pollUntil(
        `the guest-agent in ${vm} to answer`,
        () => this.g.send(vm, 'identity', {}, { timeoutMs: 2_000 }).catch(() => undefined),
        Boolean,
        { timeoutMs: 300_000, intervalMs: 1_000 },
      ).catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}; serial:\n${(await this.serial(i)).slice(-3000)}`);
      });
    }
    const agentLines = (await this.serial(0)).split('\n').filter((l) => l.startsWith('CCM-AGENT'));
    log(
      `both agents answer ${Date.now() - t0} ms after the app disk started\n  A: ${agentLines.join('\n  A: ')}`,
    );
  }

  async counter(vm: string, id: string): Promise<number> {
    return (await this.g.send(vm, 'describe', { id })).counter as number;
  }

  /**
   * A counting container in A (`pages` heap pages, `dirtyPagesPerSec`) and the migration key sealed
   * to both guests' identity keys (what the key-broker's release does); resolves once it counts.
   */
  async runWithKey(
    id: string,
    migrationId: string,
    pages: number,
    dirtyPagesPerSec: number,
    network?: ContainerNetwork,
  ): Promise<void> {
    const log = this.o.log ?? (() => undefined);
    const started = performance.now();
    await this.g.send(
      LAB_GUESTS.a.vm,
      'run-container',
      { id, pages, dirtyPagesPerSec, ...(network ? { network } : {}) },
      { timeoutMs: 600_000 },
    );
    await pollUntil(
      `${id} counts in A`,
      () => this.counter(LAB_GUESTS.a.vm, id),
      (c) => c > 3,
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    log(`${id} (${pages} heap pages) counts in A after ${(performance.now() - started).toFixed(0)} ms`);
    const key = randomBytes(32);
    for (const vm of [LAB_GUESTS.a.vm, LAB_GUESTS.b.vm]) {
      const pub = Buffer.from((await this.g.send(vm, 'identity', {})).publicKey as string, 'base64');
      const sealedKey = sealMigrationKey(key, pub, { migrationId, keyId: 'mk-1' }).toString('base64');
      await this.g.send(vm, 'load-key', { migrationId, keyId: 'mk-1', sealedKey });
    }
  }

  /**
   * container-checkpoint's steps for container `id` moving A → B, signed as the saga-coordinator:
   * `step(verb)` sends a step's action (`verb` is the step), `step(verb, step)` that step's compensation.
   */
  async checkpointSteps(id: string) {
    this.coordinator ??= await this.stack.connectAs('saga-coordinator');
    const nc = this.coordinator;
    const signer = await this.stack.identity('saga-coordinator');
    const trust = await loadTrustStore(this.stack.keysDir);
    const base = stepCommand({
      workload: { id, kind: 'container' },
      context: { sourceVmId: LAB_GUESTS.a.vm, targetVmId: LAB_GUESTS.b.vm },
    });
    const step = (verb: string, compensates?: string) =>
      signedRequest(
        nc,
        signer,
        trust,
        subjects.cmd('container-checkpoint', verb),
        compensates ? { ...base, step: compensates, kind: 'compensation' as const } : { ...base, step: verb },
        z.record(z.string(), z.unknown()),
        {
          idempotencyKey: compensates
            ? `${base.migrationId}:${compensates}:compensate:1`
            : `${base.migrationId}:${verb}:1`,
          timeoutMs: 900_000,
        },
      );
    return { base, step };
  }

  /** Stops everything it started (also after a failed start). */
  async stop(): Promise<void> {
    await this.coordinator?.close().catch(() => undefined);
    await this.checkpoint?.stop().catch(() => undefined);
    await Promise.all(this.guests.map((q) => q.kill()));
    await this.stackRef?.stop();
    this.dropNet();
    if (this.work) await rm(this.work, { recursive: true, force: true });
  }
}
