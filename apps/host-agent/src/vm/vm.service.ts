import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import {
  CcmError,
  HostErrorCodes,
  isFinalVmPhase,
  VM_PHASES,
  type LaunchReply,
  type ResumeBlocked,
  type VmPhase,
  type VmSpec,
  type VmView,
} from '@ccm/contracts';
import { type MigrationInfo } from '@ccm/qmp';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type HostAgentConfig } from '../config.js';
import { type HypervisorDriver } from '../drivers/driver.js';
import { conflict, notFound, toCcmError } from '../errors.js';
import { SevService } from '../sev/sev.service.js';
import { HostStore } from '../store/host-store.js';
import { vmView, type VmRecord } from '../store/records.js';
import { type GuestLease } from './guest-net.js';
import { KeyedLock } from './keyed-lock.js';
import { LiveVm } from './live-vm.js';
import { type SevLaunchParams, SevLaunches } from './sev-launch.js';
import { adoptVms } from './vm-adoption.js';
import { VmProcesses } from './vm-processes.js';

export type { VmSpecFile } from './vm-processes.js';

/** Injection token of the configured hypervisor driver. */
export const HYPERVISOR_DRIVER = Symbol.for('ccm.host-agent.driver');

/**
 * The VMs of this host: launch (with the attested-launch steps), incoming destinations, pause, resume,
 * destroy, and what happens when a process ends on its own. Migrations live in TransferService.
 */
@Injectable()
export class VmService implements OnApplicationShutdown {
  private readonly log = new Logger('Vms');
  private readonly locks = new KeyedLock();
  private readonly processes: VmProcesses;
  private readonly sevLaunches: SevLaunches;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    @Inject(HYPERVISOR_DRIVER) readonly driver: HypervisorDriver,
    private readonly store: HostStore,
    private readonly sev: SevService,
  ) {
    this.processes = new VmProcesses(config, driver, store);
    this.sevLaunches = new SevLaunches(config, driver, sev);
  }

  get hostId(): string {
    return this.config.CCM_HOST_ID;
  }

  runDirOf(vmId: string): string {
    return this.processes.runDirOf(vmId);
  }

  /** The live VM, or undefined. */
  get(vmId: string): LiveVm | undefined {
    return this.processes.get(vmId);
  }

  liveVms(): LiveVm[] {
    return this.processes.all();
  }

  /** Called after a VM process ended and its final phase was recorded. */
  onExit(listener: (vm: LiveVm) => void): void {
    this.processes.onExit(listener);
  }

  /** Every QMP event of every live VM. */
  onEvent(listener: (vm: LiveVm, event: string, data: Record<string, unknown>) => void): void {
    this.processes.onEvent(listener);
  }

  view(vm: LiveVm | VmRecord): VmView {
    return vmView(this.hostId, vm instanceof LiveVm ? vm.record : vm);
  }

  /** Runs `fn` as the only command on `vmId` at a time; it gets the live VM, if there is one. */
  exclusive<T>(vmId: string, fn: (vm: LiveVm | undefined) => Promise<T>): Promise<T> {
    return this.locks.run(vmId, () => fn(this.processes.get(vmId)));
  }

  async launch(req: {
    vmId: string;
    spec: VmSpec;
    start: 'running' | 'paused';
    sev?: SevLaunchParams;
  }): Promise<LaunchReply> {
    return this.exclusive(req.vmId, async (found) => {
      // An attested launch cut off by a restart of this agent (killed between starting the VM and
      // keeping its measurement) cannot be finished: the launch context died with the agent. It is
      // ended and launched anew, so the caller's retry gets a measured VM instead of a refusal.
      const existing = found && interruptedLaunch(found.record) ? await this.endInterrupted(found) : found;
      if (existing) return this.sameLaunch(existing, req);
      const lent = this.processes.lentTo(req.vmId);
      if (lent) {
        throw conflict(
          `VM ${req.vmId} moved away and its guest still runs on another host (its address ${lent.address} is lent here)`,
        );
      }
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
      const vm = await this.processes.create({
        vmId: req.vmId,
        origin: 'local',
        spec: req.spec,
        paused,
        incoming: false,
        sev: req.sev ? { policy: req.sev.policy, secretInjected: false } : undefined,
        firmwareSev: req.sev && this.driver.firmwareSev ? req.sev : undefined,
        ramFile: !!req.sev && !this.driver.firmwareSev,
      });
      {
        let measurement: LaunchReply['measurement'];
        if (req.sev) {
          measurement = await this.sevLaunches.measure(vm, req.sev).catch(async (err: unknown) => {
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
      await vm.set({
        sev: { ...r.sev, secretInjected: true, secretBytes: Buffer.from(req.secret, 'base64').length },
      });
      return this.view(vm);
    });
  }

  async pause(vmId: string): Promise<VmView> {
    return this.runState(vmId, 'Running', 'Paused', 'stop');
  }

  /**
   * Resumes a paused VM. One whose post-copy migration failed past the point of no return
   * (`resumeBlocked`) is refused SOURCE_NOT_RESUMABLE unless `acknowledgeMigration` names that
   * migration (the operator vouches that the destination's copy is gone); the flag is then cleared.
   */
  async resume(vmId: string, opts: { acknowledgeMigration?: string; reason?: string } = {}): Promise<VmView> {
    return this.runState(vmId, 'Paused', 'Running', 'cont', (vm) => {
      const blocked = vm.record.resumeBlocked;
      if (!blocked) return undefined;
      if (opts.acknowledgeMigration !== blocked.migrationId) throw resumeRefused(vmId, blocked);
      const why = `resumed by an operator acknowledging migration ${blocked.migrationId} (${blocked.reason})`;
      this.log.warn(`${vmId}: ${why}${opts.reason ? `: ${opts.reason}` : ''}`);
      return { resumeBlocked: undefined, reason: `${why}${opts.reason ? `: ${opts.reason}` : ''}` };
    });
  }

  /**
   * `stop`/`cont` from `from` to `to`. `allow` may refuse (by throwing) or add to the record's change; it
   * runs once the VM is known to be in `from`.
   */
  private async runState(
    vmId: string,
    from: VmPhase,
    to: VmPhase,
    command: 'stop' | 'cont',
    allow: (vm: LiveVm) => Partial<Pick<VmRecord, 'resumeBlocked' | 'reason'>> | undefined = () => undefined,
  ): Promise<VmView> {
    return this.exclusive(vmId, async (vm) => {
      if (!vm) throw notFound(`VM ${vmId}`);
      if (vm.record.phase === to) return this.view(vm);
      if (vm.record.phase !== from) throw conflict(`VM ${vmId} is ${vm.record.phase}, not ${from}`);
      const patch = allow(vm);
      try {
        if (command === 'cont' && vm.agentSev) await this.sevLaunches.finish(vm);
        await vm.proc!.qmp.execute(command);
      } catch (err) {
        throw toCcmError(err, `${command} ${vmId}`);
      }
      await vm.set({ ...patch, phase: to });
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
    allowPostcopy?: boolean;
    /** The source's guest address lease: the guest keeps its address (see `keepCarriedLease`). */
    guestNet?: GuestLease;
  }): Promise<{ targetVmId: string; uri: string; vm: VmView }> {
    return this.exclusive(req.vmId, async (existing) => {
      if (existing) {
        const r = existing.record;
        if (
          r.origin === 'incoming' &&
          r.phase === 'Incoming' &&
          sameSpec(r.spec, req.spec) &&
          sameLease(r.guestNet, req.guestNet) &&
          r.incomingUri
        ) {
          return { targetVmId: r.vmId, uri: r.incomingUri, vm: this.view(existing) };
        }
        throw conflict(`VM ${req.vmId} already exists on ${this.hostId} (${r.phase})`);
      }
      const vm = await this.processes.create({
        vmId: req.vmId,
        origin: 'incoming',
        spec: req.spec,
        paused: false,
        incoming: true,
        migrationId: req.migrationId,
        sev: req.sev ? { policy: req.sev.policy, secretInjected: false } : undefined,
        firmwareSev: req.sev && this.driver.firmwareSev ? { policy: req.sev.policy } : undefined,
        ...(req.guestNet ? { carriedLease: req.guestNet } : {}),
      });
      {
        const host = this.config.CCM_MIGRATION_HOST;
        let uri: string;
        try {
          const qmp = vm.proc!.qmp;
          // post-copy needs `postcopy-ram` on both ends before the stream starts
          const postcopy = req.allowPostcopy ?? this.config.CCM_MIGRATION_ALLOW_POSTCOPY;
          await qmp.execute('migrate-set-capabilities', {
            capabilities: [
              { capability: 'events', state: true },
              ...(postcopy ? [{ capability: 'postcopy-ram', state: true }] : []),
            ],
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

  /** Ends a VM's process on purpose and records `phase` (idempotent). */
  endProcess(vm: LiveVm, phase: VmPhase, reason: string): Promise<void> {
    return this.processes.end(vm, phase, reason);
  }

  /**
   * Takes back into the pool the guest address lent to `vmId` (it moved away) now that its guest ended
   * on another host at `endedAt`: only when the VM has no process here (a copy coming back that has
   * not arrived keeps it lent) and was lent before that end, less `skewMs` for the hosts' clocks (an
   * older end is an earlier life of that VM id). Returns the freed address.
   */
  async endLending(vmId: string, endedAt: Date, skewMs: number): Promise<string | undefined> {
    await this.processes.lentLoaded;
    return this.exclusive(vmId, async (live) => {
      const lent = this.processes.lentTo(vmId);
      if (!lent || live || endedAt.getTime() < lent.since.getTime() - skewMs) return undefined;
      if (!(await this.store.endLending(vmId, lent.since, VM_PHASES.filter(isFinalVmPhase))))
        return undefined;
      this.processes.unlend(lent.address, vmId);
      return lent.address;
    });
  }

  /**
   * After a restart: re-attaches to every VM process the previous agent left running (checked by pid
   * and command line, reconnected over its QMP socket, phase read from query-status), and records the
   * VMs whose process ended while no agent watched.
   */
  async adoptAll(): Promise<{ adopted: string[]; died: string[] }> {
    await this.processes.loadLent();
    return adoptVms({
      config: this.config,
      store: this.store,
      processes: this.processes,
      sevLaunches: this.sevLaunches,
      log: this.log,
    });
  }

  /** Drain: stop watching, leave every VM running for the next agent to adopt. */
  onApplicationShutdown(): Promise<void> {
    return this.processes.release();
  }
}

/** Refusal of a VM whose post-copy migration failed past the point of no return (`resumeBlocked`). */
export function resumeRefused(vmId: string, blocked: ResumeBlocked): CcmError {
  return new CcmError(
    HostErrorCodes.SourceNotResumable,
    `VM ${vmId} must not be resumed: ${blocked.reason}; an operator who made sure the destination's ` +
      `copy is gone may resume it with acknowledgeMigration=${blocked.migrationId}`,
    {
      retryable: false,
      effect: 'none',
      details: { migrationId: blocked.migrationId, reason: blocked.reason, since: blocked.since },
    },
  );
}

/** Whether two guest address leases (or their absence) are the same. */
function sameLease(a: GuestLease | undefined, b: GuestLease | undefined): boolean {
  return a?.address === b?.address && a?.prefix === b?.prefix && (a?.gateway ?? '') === (b?.gateway ?? '');
}

/** Whether two specs describe the same guest (defaults applied). */
export function sameSpec(a: VmSpec, b: VmSpec): boolean {
  const norm = (s: VmSpec) =>
    JSON.stringify([
      s.memoryMiB,
      s.cpus,
      s.kernel,
      s.initrd,
      s.cmdline ?? '',
      s.cpu ?? 'default',
      s.disks ?? [],
      s.nics ?? [],
      s.fwCfg ?? [],
    ]);
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
