import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ContainerNetwork, type ServiceName, subjects } from '@ccm/contracts';
import { loadTrustStore } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { startQemu, type QemuProcess } from '@ccm/qmp';
import { sealMigrationKey } from '@ccm/sealing';
import {
  guestClient,
  ip,
  ipOrThrow,
  overlayAdmission,
  pollUntil,
  startGuest,
  startServiceProcess,
  startTestStack,
  stepCommand,
  type GuestClient,
  type GuestProcess,
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
 * as its own process (the built one) against the same stack, and with `overlay` apps/network-overlay
 * too (its built process), driving the guest-agents' WireGuard. Used by the lab int-specs
 * (qemu-container-runc-migration.int-spec.ts, qemu-container-tcp-migration.int-spec.ts) and the
 * container blackout benchmark.
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
  /**
   * The workload overlay: network-overlay runs in this process too (CCM_OVERLAY_DRIVER=guest, its
   * `env` beyond that), both guest-agents bring up kernel WireGuard on their underlay address, and
   * {@link RuncLab.joinOverlay} makes the overlay with this host's namespace as a third peer.
   */
  readonly overlay?: { readonly env?: Record<string, string> };
  /** nats-server's ping (drops a killed guest's connection sooner; see startTestStack). */
  readonly natsPing?: { intervalS: number; max: number };
  readonly log?: (line: string) => void;
}

export const LAB_HOST = '10.217.0.1';
/** Each guest's WireGuard port on its underlay address (the overlay's peers send there). */
export const LAB_WG_PORT = 51820;
/** The overlay's id in {@link RuncLab.joinOverlay}. */
export const LAB_OVERLAY = 'lab';
/** The overlay node in this host's namespace: a guest-agent process, the client's side. */
export const LAB_CLIENT_VM = 'vm-lab-client';
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
  private operator: NatsConnection | undefined;
  private overlay: ServiceProcess | undefined;
  private clientAgent: GuestProcess | undefined;
  /** The client node's WireGuard interface in this host's namespace. */
  readonly clientInterface: string;

  constructor(private readonly o: RuncLabOptions) {
    this.bridge = `ccmbr${o.tag}`;
    this.taps = { a: `ccmra${o.tag}`, b: `ccmrb${o.tag}` };
    this.clientInterface = `ccmrw${o.tag}`;
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

  /**
   * Removes the bridge and taps, and with the bridge every route through it, and the client node's
   * WireGuard interface (synchronous: also from a signal handler).
   */
  dropNet(): void {
    if (!this.netMade) return;
    for (const l of [this.taps.a, this.taps.b, this.bridge, this.clientInterface]) ip('link', 'del', l);
  }

  /** The overlay's network, made from the lab's tag so that two labs at once hardly meet. */
  get overlayCidr(): string {
    return `10.218.${(this.o.tag % 250) + 1}.0/24`;
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
    if (this.o.overlay) {
      this.overlay = await startServiceProcess(
        'network-overlay',
        stack.env({ CCM_INSTANCE_ID: 'overlay-lab', CCM_OVERLAY_DRIVER: 'guest', ...this.o.overlay.env }),
      );
    }
    const env = (vm: string, ip: string) =>
      shellEnvFile(
        stack.env({
          CCM_VM_ID: vm,
          CCM_INSTANCE_ID: `guest-${vm}`,
          CCM_KEYS_DIR: '/run/ccm/app/keys',
          CCM_GUEST_DRIVER: 'runc',
          CCM_GUEST_STREAM_HOST: ip,
          CCM_GUEST_STREAM_TIMEOUT_MS: '600000',
          ...(this.o.overlay
            ? {
                CCM_GUEST_OVERLAY_DRIVER: 'wireguard',
                CCM_GUEST_OVERLAY_WG_MODE: 'kernel',
                CCM_GUEST_OVERLAY_PORT: String(LAB_WG_PORT),
                CCM_GUEST_OVERLAY_ENDPOINT: `${ip}:${LAB_WG_PORT}`,
              }
            : {}),
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
    this.operator = await stack.connectAs('operator');
    this.client = await guestClient(this.operator, stack.keysDir);
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

  /** A network-overlay command signed as the operator. */
  async overlayCommand(verb: string, data: unknown): Promise<Record<string, unknown>> {
    const nc = this.operator;
    if (!nc || !this.overlay) throw new Error('the lab runs no overlay');
    return signedRequest(
      nc,
      await this.stack.identity('operator'),
      await loadTrustStore(this.stack.keysDir),
      subjects.cmd('network-overlay', verb),
      data,
      z.record(z.string(), z.unknown()),
      { idempotencyKey: `${verb}-${randomUUID()}`, timeoutMs: 60_000 },
    );
  }

  /**
   * Makes the overlay ({@link LAB_OVERLAY} on {@link overlayCidr}) and admits three peers, each on a
   * key-broker statement for its guest-agent's identity key and underlay endpoint: A and B (kernel
   * WireGuard inside the QEMU guests) and the client node, a guest-agent process in this host's
   * namespace with its own WireGuard interface (kernel where the host's module loads, else
   * wireguard-go), through which a socket of this process reaches the overlay's addresses.
   */
  async joinOverlay(): Promise<void> {
    const port = LAB_WG_PORT + 1 + (this.o.tag % 1000);
    this.clientAgent = await startGuest(this.stack, LAB_CLIENT_VM, this.g.send, {
      CCM_GUEST_OVERLAY_DRIVER: 'wireguard',
      CCM_GUEST_OVERLAY_INTERFACE: this.clientInterface,
      CCM_GUEST_OVERLAY_PORT: String(port),
      CCM_GUEST_OVERLAY_ENDPOINT: `${LAB_HOST}:${port}`,
    });
    await this.overlayCommand('create-overlay', { overlayId: LAB_OVERLAY, cidr: this.overlayCidr });
    const keyBroker = await this.stack.identity('key-broker');
    const nodes = [
      { vm: LAB_GUESTS.a.vm, endpoint: `${LAB_GUESTS.a.ip}:${LAB_WG_PORT}` },
      { vm: LAB_GUESTS.b.vm, endpoint: `${LAB_GUESTS.b.ip}:${LAB_WG_PORT}` },
      { vm: LAB_CLIENT_VM, endpoint: `${LAB_HOST}:${port}` },
    ];
    for (const { vm, endpoint } of nodes) {
      const key = (await this.g.send(vm, 'identity', {})).publicKey as string;
      const admission = overlayAdmission(keyBroker, vm, key, { endpoint });
      await this.overlayCommand('admit-peer', { overlayId: LAB_OVERLAY, admission });
    }
  }

  /** The allowed IPs of each peer as overlay node `vm`'s interface holds them, by the peer's VM id. */
  async allowedIpsSeenBy(vm: string): Promise<Record<string, string[]>> {
    const peers = (await this.g.send(vm, 'overlay-state', {})).peers as Array<{
      publicKey: string;
      allowedIps: string[];
    }>;
    const seen: Record<string, string[]> = {};
    for (const other of [LAB_GUESTS.a.vm, LAB_GUESTS.b.vm, LAB_CLIENT_VM]) {
      const key = (await this.g.send(other, 'identity', {})).publicKey as string;
      const p = peers.find((x) => x.publicKey === key);
      if (p) seen[other] = [...p.allowedIps].sort();
    }
    return seen;
  }

  /**
   * The steps of container `id` moving A → B, signed as the saga-coordinator: `step(verb)` sends
   * container-checkpoint's action (`verb` is the step), `step(verb, step)` that step's compensation;
   * `overlayStep` the same to network-overlay (the cut-over and its revert).
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
    const stepOf = (service: ServiceName) => (verb: string, compensates?: string) =>
      signedRequest(
        nc,
        signer,
        trust,
        subjects.cmd(service, verb),
        compensates ? { ...base, step: compensates, kind: 'compensation' as const } : { ...base, step: verb },
        z.record(z.string(), z.unknown()),
        {
          idempotencyKey: compensates
            ? `${base.migrationId}:${compensates}:compensate:1`
            : `${base.migrationId}:${verb}:1`,
          timeoutMs: 900_000,
        },
      );
    return { base, step: stepOf('container-checkpoint'), overlayStep: stepOf('network-overlay') };
  }

  /** Stops everything it started (also after a failed start). */
  async stop(): Promise<void> {
    await this.coordinator?.close().catch(() => undefined);
    await this.clientAgent?.stop();
    await this.operator?.close().catch(() => undefined);
    await this.overlay?.stop().catch(() => undefined);
    await this.checkpoint?.stop().catch(() => undefined);
    await Promise.all(this.guests.map((q) => q.kill()));
    await this.stackRef?.stop();
    this.dropNet();
    if (this.work) await rm(this.work, { recursive: true, force: true });
  }
}
