import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  HostErrorCodes,
  isFinalVmPhase,
  type LaunchReply,
  type VmPhase,
  type VmSpec,
  type VmView,
} from '@ccm/contracts';
import { isEvent, type MigrationInfo } from '@ccm/qmp';
import { buildSevKernelHashesTable } from '@ccm/sev';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { hostRunDir, type HostAgentConfig } from '../config.js';
import { type HypervisorDriver } from '../drivers/driver.js';
import {
  adoptVmProcess,
  readPid,
  SEV_CONTEXT_FILE,
  vmPaths,
  type VmExit,
  type VmProcess,
} from '../drivers/vm-process.js';
import { conflict, notFound, toCcmError } from '../errors.js';
import { SevService } from '../sev/sev.service.js';
import { HostStore } from '../store/host-store.js';
import { vmView, type VmRecord } from '../store/records.js';
import { LiveVm } from './live-vm.js';

/** Injection token of the configured hypervisor driver. */
export const HYPERVISOR_DRIVER = Symbol.for('ccm.host-agent.driver');

/** What a VM's runtime dir records about how it was started (read back when adopting it). */
export interface VmSpecFile {
  vmId: string;
  driver: 'qemu' | 'sim';
  origin: 'local' | 'incoming';
  spec: VmSpec;
  paused: boolean;
  incoming: boolean;
  sev?: { policy: number; godh?: string; session?: string };
  /** Firmware image the VM loads (the simulated hypervisor reads it from here). */
  firmware?: string;
  createdAt: string;
}

/** Files removed when a VM ends; its logs stay for post-mortems until the id is used again. */
const RUNTIME_FILES = ['qmp.sock', 'vm.pid', 'spec.json', 'godh.b64', 'session.b64', SEV_CONTEXT_FILE];

/**
 * The VMs of this host: launch (with the attested-launch steps), incoming destinations, pause, resume,
 * destroy, and what happens when a process ends on its own. Migrations live in TransferService.
 */
@Injectable()
export class VmService implements OnApplicationShutdown {
  private readonly log = new Logger('Vms');
  private readonly live = new Map<string, LiveVm>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly exitListeners = new Set<(vm: LiveVm) => void>();
  private readonly eventListeners = new Set<
    (vm: LiveVm, event: string, data: Record<string, unknown>) => void
  >();

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    @Inject(HYPERVISOR_DRIVER) readonly driver: HypervisorDriver,
    private readonly store: HostStore,
    private readonly sev: SevService,
  ) {}

  get hostId(): string {
    return this.config.CCM_HOST_ID;
  }

  runDirOf(vmId: string): string {
    return join(hostRunDir(this.config), 'vms', vmId);
  }

  /** The live VM, or undefined. */
  get(vmId: string): LiveVm | undefined {
    return this.live.get(vmId);
  }

  liveVms(): LiveVm[] {
    return [...this.live.values()];
  }

  /** Called after a VM process ended and its final phase was recorded. */
  onExit(listener: (vm: LiveVm) => void): void {
    this.exitListeners.add(listener);
  }

  /** Every QMP event of every live VM. */
  onEvent(listener: (vm: LiveVm, event: string, data: Record<string, unknown>) => void): void {
    this.eventListeners.add(listener);
  }

  view(vm: LiveVm | VmRecord): VmView {
    return vmView(this.hostId, vm instanceof LiveVm ? vm.record : vm);
  }

  /** Runs `fn` as the only command on `vmId` at a time; it gets the live VM, if there is one. */
  exclusive<T>(vmId: string, fn: (vm: LiveVm | undefined) => Promise<T>): Promise<T> {
    const before = this.locks.get(vmId) ?? Promise.resolve();
    const run = before.then(() => fn(this.live.get(vmId)));
    const tail = run.catch(() => undefined);
    this.locks.set(vmId, tail);
    void tail.then(() => {
      if (this.locks.get(vmId) === tail) this.locks.delete(vmId);
    });
    return run;
  }

  async launch(req: {
    vmId: string;
    spec: VmSpec;
    start: 'running' | 'paused';
    sev?: { policy: number; godh: string; session: string };
  }): Promise<LaunchReply> {
    return this.exclusive(req.vmId, async (found) => {
      // An attested launch cut off by a restart of this agent (killed between starting the VM and
      // keeping its measurement) cannot be finished: the launch context died with the agent. It is
      // ended and launched anew, so the caller's retry gets a measured VM instead of a refusal.
      const existing = found && interruptedLaunch(found.record) ? await this.endInterrupted(found) : found;
      if (existing) return this.sameLaunch(existing, req);
      if (req.sev && !this.sev.processor) {
        throw new CcmError(
          HostErrorCodes.SevUnavailable,
          `host ${this.hostId} has no SEV (CCM_SEV=${this.config.CCM_SEV})`,
          {
            retryable: false,
            effect: 'none',
          },
        );
      }
      const paused = req.start === 'paused' || !!req.sev;
      const vm = await this.create({
        vmId: req.vmId,
        origin: 'local',
        spec: req.spec,
        paused,
        incoming: false,
        sev: req.sev ? { policy: req.sev.policy, secretInjected: false } : undefined,
        firmwareSev: req.sev && this.driver.firmwareSev ? req.sev : undefined,
      });
      {
        let measurement: LaunchReply['measurement'];
        if (req.sev) {
          measurement = await this.measureLaunch(vm, req.sev).catch(async (err: unknown) => {
            await this.endProcess(vm, 'Failed', `attested launch failed: ${(err as Error).message}`);
            throw toCcmError(err, `launch ${req.vmId}`);
          });
          await vm.set({
            sev: { ...vm.record.sev!, measurement: measurement.blob, platform: measurement.platform },
          });
        }
        await vm.set({ phase: paused ? 'Paused' : 'Running' });
        return { vm: this.view(vm), ...(measurement ? { measurement } : {}) };
      }
    });
  }

  private async endInterrupted(vm: LiveVm): Promise<undefined> {
    const reason = 'its attested launch was cut off by a restart of the host-agent (no measurement kept)';
    this.log.warn(`${vm.vmId}: ${reason}; ending it to launch it anew`);
    await this.endProcess(vm, 'Failed', reason);
    return undefined;
  }

  /** A repeated launch of a live VM: the same request gets the same answer, another one a conflict. */
  private sameLaunch(vm: LiveVm, req: { spec: VmSpec; sev?: { policy: number } }): LaunchReply {
    const r = vm.record;
    if (r.origin !== 'local' || !sameSpec(r.spec, req.spec) || r.sev?.policy !== req.sev?.policy) {
      throw conflict(`VM ${r.vmId} already exists on ${this.hostId} (${r.phase}) with another spec`);
    }
    const m = r.sev?.measurement;
    return {
      vm: this.view(vm),
      ...(m && r.sev?.platform ? { measurement: { blob: m, platform: r.sev.platform } } : {}),
    };
  }

  /**
   * LAUNCH_MEASURE and the firmware version that made it. With firmware (the sim, SEV hardware) QEMU
   * reports both (query-sev-launch-measure, query-sev); otherwise the agent runs the
   * launch on the software secure processor and measures what QEMU was given: the firmware image, then
   * the SEV hashes table of kernel, initrd and command line (as OVMF's measured direct boot does).
   */
  private async measureLaunch(
    vm: LiveVm,
    sev: { policy: number; godh: string; session: string },
  ): Promise<NonNullable<LaunchReply['measurement']>> {
    const proc = vm.proc!;
    if (this.driver.firmwareSev) {
      const { data } = await proc.qmp.execute('query-sev-launch-measure');
      const info = await proc.qmp.execute('query-sev');
      return {
        blob: data,
        platform: { apiMajor: info['api-major'], apiMinor: info['api-minor'], build: info['build-id'] },
      };
    }
    const spec = vm.record.spec;
    const launch = this.sev.processor!.launch({
      vmId: vm.vmId,
      policy: sev.policy,
      godh: Buffer.from(sev.godh, 'base64'),
      session: Buffer.from(sev.session, 'base64'),
      regions: [
        await readFile(this.config.CCM_VM_FIRMWARE),
        buildSevKernelHashesTable({
          kernel: await readFile(spec.kernel!),
          initrd: spec.initrd ? await readFile(spec.initrd) : undefined,
          cmdline: spec.cmdline ?? '',
        }),
      ],
      contextFile: vmPaths(vm.record.runDir).sevContext,
    });
    vm.agentSev = launch;
    return { blob: launch.measure().toString('base64'), platform: this.sev.processor!.version };
  }

  async injectSecret(req: {
    vmId: string;
    packetHeader: string;
    secret: string;
    gpa?: number;
  }): Promise<VmView> {
    return this.exclusive(req.vmId, async (vm) => {
      if (!vm) throw notFound(`VM ${req.vmId}`);
      const r = vm.record;
      if (!r.sev) throw conflict(`VM ${req.vmId} was not launched with SEV`);
      if (r.phase !== 'Paused')
        throw conflict(`VM ${req.vmId} is ${r.phase}: secrets are injected before resume`);
      try {
        if (vm.agentSev) {
          vm.agentSev.injectSecret(
            Buffer.from(req.packetHeader, 'base64'),
            Buffer.from(req.secret, 'base64'),
            req.gpa,
          );
        } else {
          await vm.proc!.qmp.execute('sev-inject-launch-secret', {
            'packet-header': req.packetHeader,
            secret: req.secret,
            ...(req.gpa === undefined ? {} : { gpa: req.gpa }),
          });
        }
      } catch (err) {
        throw toCcmError(err, `inject a secret into ${req.vmId}`);
      }
      await vm.set({ sev: { ...r.sev, secretInjected: true } });
      return this.view(vm);
    });
  }

  async pause(vmId: string): Promise<VmView> {
    return this.runState(vmId, 'Running', 'Paused', 'stop');
  }

  async resume(vmId: string): Promise<VmView> {
    return this.runState(vmId, 'Paused', 'Running', 'cont');
  }

  private async runState(
    vmId: string,
    from: VmPhase,
    to: VmPhase,
    command: 'stop' | 'cont',
  ): Promise<VmView> {
    return this.exclusive(vmId, async (vm) => {
      if (!vm) throw notFound(`VM ${vmId}`);
      if (vm.record.phase === to) return this.view(vm);
      if (vm.record.phase !== from) throw conflict(`VM ${vmId} is ${vm.record.phase}, not ${from}`);
      try {
        if (command === 'cont' && vm.agentSev) vm.agentSev.finish();
        await vm.proc!.qmp.execute(command);
      } catch (err) {
        throw toCcmError(err, `${command} ${vmId}`);
      }
      await vm.set({ phase: to });
      return this.view(vm);
    });
  }

  async destroy(vmId: string, reason = 'destroyed by command'): Promise<VmView> {
    return this.exclusive(vmId, async (vm) => {
      if (vm) {
        await this.endProcess(vm, 'Destroyed', reason);
        return this.view(vm);
      }
      const ended = await this.store.loadVm(vmId);
      if (ended) return this.view(ended);
      throw notFound(`VM ${vmId}`);
    });
  }

  /**
   * Starts a migration destination: a VM with the source's spec that listens for the stream on this
   * host's data-plane address (a free port QEMU picks and reports).
   */
  async prepareIncoming(req: {
    vmId: string;
    spec: VmSpec;
    migrationId?: string;
    sev?: { policy: number };
  }): Promise<{ targetVmId: string; uri: string; vm: VmView }> {
    return this.exclusive(req.vmId, async (existing) => {
      if (existing) {
        const r = existing.record;
        if (
          r.origin === 'incoming' &&
          r.phase === 'Incoming' &&
          sameSpec(r.spec, req.spec) &&
          r.incomingUri
        ) {
          return { targetVmId: r.vmId, uri: r.incomingUri, vm: this.view(existing) };
        }
        throw conflict(`VM ${req.vmId} already exists on ${this.hostId} (${r.phase})`);
      }
      const vm = await this.create({
        vmId: req.vmId,
        origin: 'incoming',
        spec: req.spec,
        paused: false,
        incoming: true,
        migrationId: req.migrationId,
        sev: req.sev ? { policy: req.sev.policy, secretInjected: false } : undefined,
        firmwareSev: req.sev && this.driver.firmwareSev ? { policy: req.sev.policy } : undefined,
      });
      {
        const host = this.config.CCM_MIGRATION_HOST;
        let uri: string;
        try {
          const qmp = vm.proc!.qmp;
          await qmp.execute('migrate-set-capabilities', {
            capabilities: [{ capability: 'events', state: true }],
          });
          await qmp.execute('migrate-incoming', { uri: `tcp:${host}:0` });
          uri = `tcp:${host}:${listeningPort(await qmp.execute('query-migrate'))}`;
        } catch (err) {
          await this.endProcess(
            vm,
            'Failed',
            `could not listen for the migration: ${(err as Error).message}`,
          );
          throw toCcmError(err, `prepare-incoming ${req.vmId}`);
        }
        await vm.set({ phase: 'Incoming', incomingUri: uri });
        return { targetVmId: vm.vmId, uri, vm: this.view(vm) };
      }
    });
  }

  /** Creates the record and runtime dir, starts the process and starts watching it. */
  private async create(o: {
    vmId: string;
    origin: 'local' | 'incoming';
    spec: VmSpec;
    paused: boolean;
    incoming: boolean;
    migrationId?: string;
    sev?: VmRecord['sev'];
    firmwareSev?: { policy: number; godh?: string; session?: string };
  }): Promise<LiveVm> {
    const runDir = this.runDirOf(o.vmId);
    const paths = vmPaths(runDir);
    if (Buffer.byteLength(paths.qmpSocket) > 107) {
      throw new CcmError(
        ErrorCodes.ValidationFailed,
        `VM id ${o.vmId} makes the socket path too long under ${hostRunDir(this.config)}`,
        {
          retryable: false,
          effect: 'none',
        },
      );
    }
    const now = new Date();
    const record: VmRecord = {
      vmId: o.vmId,
      driver: this.driver.kind,
      origin: o.origin,
      phase: 'Starting',
      spec: o.spec,
      ...(o.sev ? { sev: o.sev } : {}),
      runDir,
      ...(o.migrationId ? { migrationId: o.migrationId } : {}),
      createdAt: now,
      phaseChangedAt: now,
    };
    const vm = new LiveVm(record, undefined, (next, prev) => this.store.saveVm(next, prev));
    await vm.flush();
    this.live.set(o.vmId, vm);
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const specFile: VmSpecFile = {
      vmId: o.vmId,
      driver: this.driver.kind,
      origin: o.origin,
      spec: o.spec,
      paused: o.paused,
      incoming: o.incoming,
      ...(o.firmwareSev ? { sev: o.firmwareSev } : {}),
      ...(existsSync(this.config.CCM_VM_FIRMWARE) ? { firmware: this.config.CCM_VM_FIRMWARE } : {}),
      createdAt: now.toISOString(),
    };
    await writeFile(paths.specFile, `${JSON.stringify(specFile, null, 2)}\n`);
    let proc: VmProcess;
    try {
      proc = await this.driver.start({
        vmId: o.vmId,
        paths,
        spec: o.spec,
        paused: o.paused,
        incoming: o.incoming,
        sev: o.firmwareSev,
        startTimeoutMs: this.config.CCM_VM_START_TIMEOUT_MS,
        commandTimeoutMs: this.config.CCM_QMP_COMMAND_TIMEOUT_MS,
      });
    } catch (err) {
      const e = toCcmError(err, `start VM ${o.vmId}`);
      this.live.delete(o.vmId);
      await vm.set({ phase: 'Failed', reason: e.message.slice(0, 2000) });
      await this.cleanRunDir(runDir);
      throw e;
    }
    await this.attach(vm, proc);
    return vm;
  }

  /** Watches a process: its QMP events and its end. */
  async attach(vm: LiveVm, proc: VmProcess): Promise<void> {
    vm.proc = proc;
    this.live.set(vm.vmId, vm);
    await vm.set({ pid: proc.pid });
    proc.qmp.onEvent((e) => {
      if (isEvent(e, 'SHUTDOWN'))
        vm.exitHint = `the guest shut down (${String(e.data['reason'] ?? 'unknown')})`;
      const arrived = (isEvent(e, 'MIGRATION') && e.data.status === 'completed') || e.event === 'RESUME';
      if (arrived && vm.record.phase === 'Incoming') void this.incomingCompleted(vm, proc);
      for (const l of this.eventListeners) l(vm, e.event, e.data ?? {});
    });
    void proc.exited.then((exit) => this.onProcessEnd(vm, proc, exit));
  }

  /** A destination received the whole VM: it runs now (or stays paused if the source was paused). */
  private async incomingCompleted(vm: LiveVm, proc: VmProcess): Promise<void> {
    // QEMU starts the guest right after `completed` unless the source guest was paused.
    let status: string | undefined;
    for (let i = 0; i < 20 && status !== 'running'; i++) {
      if (i) await new Promise((r) => setTimeout(r, 50));
      status = (await proc.qmp.execute('query-status').catch(() => undefined))?.status;
    }
    if (vm.proc !== proc || vm.record.phase !== 'Incoming') return;
    await vm.set({ phase: status === 'running' ? 'Running' : 'Paused' });
  }

  private async onProcessEnd(vm: LiveVm, proc: VmProcess, exit: VmExit): Promise<void> {
    if (vm.proc !== proc) return;
    await proc.qmp.close();
    vm.agentSev?.close();
    const expected = vm.expectedExit;
    let phase: VmPhase;
    let reason: string;
    if (expected) {
      ({ phase, reason } = expected);
    } else {
      const how = proc.adopted
        ? 'ended'
        : `exited (code ${exit.code ?? 'none'}, signal ${exit.signal ?? 'none'})`;
      const last = (await proc.stderrTail()).trim().split('\n').filter(Boolean).pop();
      const detail = vm.exitHint ?? (last ? `: ${last}` : '');
      const pre =
        vm.record.phase === 'Incoming' ? 'incoming migration failed: the VM process ' : 'the VM process ';
      phase = vm.record.phase === 'Incoming' || vm.record.phase === 'Starting' ? 'Failed' : 'Died';
      reason = `${pre}${how}${vm.exitHint ? ` (${vm.exitHint})` : detail}`;
      this.log.warn(`VM ${vm.vmId} ${phase}: ${reason}`);
    }
    this.live.delete(vm.vmId);
    await vm
      .set({ phase, reason, pid: undefined })
      .catch((err: unknown) => this.log.error(`recording the end of VM ${vm.vmId} failed: ${String(err)}`));
    await this.cleanRunDir(vm.record.runDir);
    vm.settleEnded();
    for (const l of this.exitListeners) l(vm);
  }

  /** Ends a VM's process on purpose and records `phase` (idempotent). */
  async endProcess(vm: LiveVm, phase: VmPhase, reason: string): Promise<void> {
    const proc = vm.proc;
    if (!proc) {
      if (!isFinalVmPhase(vm.record.phase)) await vm.set({ phase, reason, pid: undefined });
      this.live.delete(vm.vmId);
      return;
    }
    vm.expectedExit ??= { phase, reason };
    await proc.quit();
    await vm.ended; // the exit handler records the phase
  }

  private async cleanRunDir(runDir: string): Promise<void> {
    await Promise.all(RUNTIME_FILES.map((f) => rm(join(runDir, f), { force: true })));
  }

  /**
   * After a restart: re-attaches to every VM process the previous agent left running (checked by pid
   * and command line, reconnected over its QMP socket, phase read from query-status), and records the
   * VMs whose process ended while no agent watched.
   */
  async adoptAll(): Promise<{ adopted: string[]; died: string[] }> {
    const adopted: string[] = [];
    const died: string[] = [];
    for (const r of await this.store.loadLiveVms()) {
      const vm = new LiveVm(r, r, (next, prev) => this.store.saveVm(next, prev));
      const paths = vmPaths(r.runDir);
      const pid = r.pid ?? (await readPid(paths));
      const proc = pid
        ? await adoptVmProcess(paths, pid, {
            connectTimeoutMs: 2_000,
            commandTimeoutMs: this.config.CCM_QMP_COMMAND_TIMEOUT_MS,
          })
        : undefined;
      const status = proc && (await proc.qmp.execute('query-status').catch(() => undefined));
      if (!proc || !status) {
        await proc?.qmp.close();
        const phase = r.phase === 'Incoming' || r.phase === 'Starting' ? 'Failed' : 'Died';
        const reason = `the VM process${pid ? ` (pid ${pid})` : ''} ended while the host-agent was down`;
        await vm.set({ phase, reason, pid: undefined });
        await this.cleanRunDir(r.runDir);
        this.log.warn(`VM ${r.vmId} ${phase}: ${reason}`);
        died.push(r.vmId);
        continue;
      }
      this.restoreSev(vm);
      await this.attach(vm, proc);
      const phase: VmPhase | undefined =
        status.status === 'running'
          ? 'Running'
          : status.status === 'inmigrate'
            ? 'Incoming'
            : status.status === 'paused' || status.status === 'prelaunch'
              ? 'Paused'
              : undefined; // postmigrate and the like: the migration's watcher decides
      if (phase && phase !== r.phase) await vm.set({ phase });
      this.log.log(`VM ${r.vmId} re-adopted: pid ${proc.pid}, ${status.status}`);
      adopted.push(r.vmId);
    }
    return { adopted, died };
  }

  /**
   * An adopted VM whose SEV launch ran on the software secure processor gets its context back from the
   * sealed copy in its runtime dir, as the firmware would still hold it. Without it the VM runs on and
   * SEV migration is refused, saying why ({@link LiveVm.agentSevLost}).
   */
  private restoreSev(vm: LiveVm): void {
    const r = vm.record;
    const sp = this.sev.processor;
    if (!r.sev || r.origin !== 'local' || this.driver.firmwareSev || sp?.mode !== 'emulated') return;
    const restored = sp.restore({ vmId: r.vmId, contextFile: vmPaths(r.runDir).sevContext });
    if ('launch' in restored) {
      vm.agentSev = restored.launch;
      this.log.log(`VM ${r.vmId}: SEV context restored (${restored.launch.state})`);
      return;
    }
    vm.agentSevLost = restored.lost;
    this.log.warn(
      `VM ${r.vmId}: SEV context not restored (${restored.lost.reason}): ${restored.lost.detail}`,
    );
  }

  /** Drain: stop watching, leave every VM running for the next agent to adopt. */
  async onApplicationShutdown(): Promise<void> {
    for (const vm of this.live.values()) {
      const proc = vm.proc;
      vm.proc = undefined; // the exit watcher ignores what follows
      await proc?.qmp.close();
    }
    this.live.clear();
  }
}

/** Whether two specs describe the same guest (defaults applied). */
export function sameSpec(a: VmSpec, b: VmSpec): boolean {
  const norm = (s: VmSpec) => JSON.stringify([s.memoryMiB, s.cpus, s.kernel, s.initrd, s.cmdline ?? '']);
  return norm(a) === norm(b);
}

/** The TCP port an incoming migration listens on (query-migrate `socket-address`, QEMU ≥ 4.0). */
function listeningPort(info: MigrationInfo): number {
  const addrs = (info as { 'socket-address'?: Array<{ port?: string | number }> })['socket-address'];
  const port = Number(addrs?.[0]?.port);
  if (!Number.isInteger(port) || port <= 0) {
    throw new CcmError(
      HostErrorCodes.HypervisorProtocol,
      'query-migrate did not say which port the destination listens on',
      {
        retryable: false,
        effect: 'maybe',
      },
    );
  }
  return port;
}

/**
 * A local attested launch whose measurement was never kept: only an agent restarted between starting
 * the VM and measuring it leaves one (the launch holds the VM's lock until it is measured).
 */
export function interruptedLaunch(r: VmRecord): boolean {
  return r.origin === 'local' && r.sev !== undefined && !r.sev.measurement && !r.sev.secretInjected;
}
