import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { CcmError, ErrorCodes, isFinalVmPhase, type VmPhase, type VmSpec } from '@ccm/contracts';
import { isEvent } from '@ccm/qmp';
import { hostRunDir, type HostAgentConfig } from '../config.js';
import { type HypervisorDriver } from '../drivers/driver.js';
import {
  GUEST_RAM_FILE,
  SEV_CONTEXT_FILE,
  vmPaths,
  type VmExit,
  type VmProcess,
} from '../drivers/vm-process.js';
import { toCcmError } from '../errors.js';
import { type HostStore } from '../store/host-store.js';
import { type VmRecord } from '../store/records.js';
import {
  FW_CFG_VM,
  GUEST_VM_FILE,
  guestVmBlob,
  keepCarriedLease,
  leaseAddress,
  onGuestNet,
  type GuestLease,
} from './guest-net.js';
import { LiveVm } from './live-vm.js';

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

/** How a VM process is to be started. */
export interface VmStart {
  vmId: string;
  origin: 'local' | 'incoming';
  spec: VmSpec;
  paused: boolean;
  incoming: boolean;
  migrationId?: string;
  sev?: VmRecord['sev'];
  /** The SEV launch parameters the firmware takes (hosts whose driver has SEV firmware). */
  firmwareSev?: { policy: number; godh?: string; session?: string };
  /** Back guest RAM by a file the agent writes the emulated launch's secret page into. */
  ramFile?: boolean;
  /** An incoming VM: the guest address lease it holds at its source (it keeps the address). */
  carriedLease?: GuestLease;
}

/** Files removed when a VM ends; its logs stay for post-mortems until the id is used again. */
const RUNTIME_FILES = [
  'qmp.sock',
  'vm.pid',
  'spec.json',
  'godh.b64',
  'session.b64',
  SEV_CONTEXT_FILE,
  GUEST_RAM_FILE,
  GUEST_VM_FILE,
];

/**
 * The VM processes of this host and their watching: the live set, starting a process in its runtime
 * dir, its QMP events, an incoming migration's arrival, and its end (expected or not) recorded as the
 * VM's final phase. Command rules are VmService's; this is the part that changes with the hypervisor.
 */
export class VmProcesses {
  private readonly log = new Logger('Vms');
  private readonly live = new Map<string, LiveVm>();
  /** Guest addresses leased by VMs being created (not yet in {@link live}). */
  private readonly leasing = new Map<string, string>(); // address → VM id
  /** Guest addresses lent to VMs that moved away (see `VmRecord.guestNetLentAt`), by address. */
  private readonly lent = new Map<string, { vmId: string; since: Date }>();
  private markLentLoaded!: () => void;
  /** Resolves once {@link loadLent} read the lent addresses back. */
  readonly lentLoaded = new Promise<void>((r) => (this.markLentLoaded = r));
  private readonly exitListeners = new Set<(vm: LiveVm) => void>();
  private readonly eventListeners = new Set<
    (vm: LiveVm, event: string, data: Record<string, unknown>) => void
  >();

  constructor(
    private readonly config: HostAgentConfig,
    readonly driver: HypervisorDriver,
    private readonly store: HostStore,
  ) {}

  runDirOf(vmId: string): string {
    return join(hostRunDir(this.config), 'vms', vmId);
  }

  get(vmId: string): LiveVm | undefined {
    return this.live.get(vmId);
  }

  all(): LiveVm[] {
    return [...this.live.values()];
  }

  /** Reads the lent addresses back after a restart (before any VM is created or ended here). */
  async loadLent(): Promise<void> {
    for (const r of await this.store.loadLent())
      if (r.guestNet && r.guestNetLentAt)
        this.lent.set(r.guestNet.address, { vmId: r.vmId, since: r.guestNetLentAt });
    this.markLentLoaded();
  }

  /** The VM whose moved-away guest holds `address` here, and since when. */
  lentTo(vmId: string): { address: string; since: Date } | undefined {
    for (const [address, l] of this.lent) if (l.vmId === vmId) return { address, since: l.since };
    return undefined;
  }

  /** Takes a lent address back into the pool (its guest ended on another host). */
  unlend(address: string, vmId: string): void {
    if (this.lent.get(address)?.vmId === vmId) this.lent.delete(address);
  }

  onExit(listener: (vm: LiveVm) => void): void {
    this.exitListeners.add(listener);
  }

  onEvent(listener: (vm: LiveVm, event: string, data: Record<string, unknown>) => void): void {
    this.eventListeners.add(listener);
  }

  /** Creates the record and runtime dir, starts the process and starts watching it. */
  async create(o: VmStart): Promise<LiveVm> {
    const runDir = this.runDirOf(o.vmId);
    const paths = vmPaths(runDir);
    if (Buffer.byteLength(paths.qmpSocket) > 107) {
      throw new CcmError(
        ErrorCodes.ValidationFailed,
        `VM id ${o.vmId} makes the socket path too long under ${hostRunDir(this.config)}`,
        { retryable: false, effect: 'none' },
      );
    }
    const lease = this.leaseFor(o);
    if (lease) this.leasing.set(lease.address, o.vmId);
    try {
      return await this.createLeased(o, runDir, paths, lease);
    } finally {
      if (lease) this.leasing.delete(lease.address);
    }
  }

  /**
   * The VM's guest address: a local VM on the guest network leases the first free one of the range; an
   * incoming VM keeps the one it carries from its source (or holds none when it carries none).
   */
  private leaseFor(o: VmStart): GuestLease | undefined {
    const net = this.config.CCM_GUEST_NET;
    const holders = new Map(this.leasing);
    for (const [address, l] of this.lent) holders.set(address, l.vmId);
    for (const v of this.all()) if (v.record.guestNet) holders.set(v.record.guestNet.address, v.vmId);
    if (o.origin === 'incoming')
      return o.carriedLease && keepCarriedLease(net, o.spec, o.vmId, o.carriedLease, holders);
    return onGuestNet(net, o.spec) ? leaseAddress(net, holders.keys()) : undefined;
  }

  private async createLeased(
    o: VmStart,
    runDir: string,
    paths: ReturnType<typeof vmPaths>,
    lease: VmRecord['guestNet'],
  ): Promise<LiveVm> {
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
      ...(lease ? { guestNet: lease } : {}),
      // A guest coming back with the address it was lent: lent still until it has arrived.
      ...(lease && this.lent.get(lease.address)?.vmId === o.vmId
        ? { guestNetLentAt: this.lent.get(lease.address)!.since }
        : {}),
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
    // The per-VM blob goes to QEMU only: the recorded spec stays the one asked for (one spec, many VMs).
    let spec = o.spec;
    if (lease) {
      const blob = join(runDir, GUEST_VM_FILE);
      await writeFile(blob, guestVmBlob(o.vmId, lease), { mode: 0o600 });
      spec = { ...spec, fwCfg: [...(spec.fwCfg ?? []), { name: FW_CFG_VM, path: blob }] };
    }
    let proc: VmProcess;
    try {
      proc = await this.driver.start({
        vmId: o.vmId,
        paths,
        spec,
        paused: o.paused,
        incoming: o.incoming,
        sev: o.firmwareSev,
        ...(o.ramFile ? { ramFile: true } : {}),
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
    // The guest is here now: an address it was lent is this host's lease again.
    if (vm.record.guestNet) this.unlend(vm.record.guestNet.address, vm.vmId);
    await vm.set({ phase: status === 'running' ? 'Running' : 'Paused', guestNetLentAt: undefined });
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
      .set({ phase, reason, pid: undefined, ...this.lendOnLeaving(vm, phase) })
      .catch((err: unknown) => this.log.error(`recording the end of VM ${vm.vmId} failed: ${String(err)}`));
    await this.cleanRunDir(vm.record.runDir);
    await this.releaseDevices(vm.record);
    vm.settleEnded();
    for (const l of this.exitListeners) l(vm);
  }

  /** Ends a VM's process on purpose and records `phase` (idempotent). */
  async end(vm: LiveVm, phase: VmPhase, reason: string): Promise<void> {
    const proc = vm.proc;
    if (!proc) {
      if (!isFinalVmPhase(vm.record.phase))
        await vm.set({ phase, reason, pid: undefined, ...this.lendOnLeaving(vm, phase) });
      this.live.delete(vm.vmId);
      return;
    }
    vm.expectedExit ??= { phase, reason };
    await proc.quit();
    await vm.ended; // the exit handler records the phase
  }

  /**
   * A VM that moved away keeps its guest address lent: the guest uses it on another host until it ends
   * there (LentAddresses frees it then), so no VM launched here may lease it meanwhile.
   */
  private lendOnLeaving(vm: LiveVm, phase: VmPhase): Pick<VmRecord, 'guestNetLentAt'> {
    const lease = vm.record.guestNet;
    if (phase !== 'MigratedAway' || !lease) return {};
    const since = new Date();
    this.lent.set(lease.address, { vmId: vm.vmId, since });
    return { guestNetLentAt: since };
  }

  /** What the driver made for a VM outside its runtime dir (taps) goes once its process ended. */
  async releaseDevices(r: Pick<VmRecord, 'vmId' | 'spec'>): Promise<void> {
    await this.driver
      .release?.(r.vmId, r.spec)
      .catch((err: unknown) => this.log.warn(`releasing the devices of VM ${r.vmId} failed: ${String(err)}`));
  }

  async cleanRunDir(runDir: string): Promise<void> {
    await Promise.all(RUNTIME_FILES.map((f) => rm(join(runDir, f), { force: true })));
  }

  /** Drain: stop watching, leave every VM running for the next agent to adopt. */
  async release(): Promise<void> {
    for (const vm of this.live.values()) {
      const proc = vm.proc;
      vm.proc = undefined; // the exit watcher ignores what follows
      await proc?.qmp.close();
    }
    this.live.clear();
  }
}
