import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { type VmSpec } from '@ccm/contracts';
import { IncomingMigration } from './incoming.js';
import { PAGE_SIZE, PlainMemory, SIM_LAYOUT, type SimMemory } from './memory.js';
import { type SimMigrationSettings } from './migration-stats.js';
import { OutgoingMigration } from './outgoing.js';
import { QmpServer, QmpServerError, type QmpHandler } from './qmp-server.js';
import { type SimSev } from './sim-sev.js';
import { PANIC_LINE, panicsOnArrival, Workload, workloadSettings, type WorkloadState } from './workload.js';

const MIB = 1024 * 1024;
/** QEMU's default migration settings. */
const DEFAULT_SETTINGS: SimMigrationSettings = {
  downtimeLimitMs: 300,
  maxBandwidth: 128 * MIB,
  autoConverge: false,
  pauseBeforeSwitchover: false,
  events: false,
  postcopyRam: false,
};

/** A string argument of a QMP command ('' when absent or not a string). */
const str = (a: Record<string, unknown>, key: string): string => {
  const v = a[key];
  return typeof v === 'string' ? v : '';
};

type RunState =
  'prelaunch' | 'paused' | 'running' | 'inmigrate' | 'postmigrate' | 'finish-migrate' | 'shutdown';

/** How the agent started this VM (its runtime dir's spec.json). */
export interface SimVmSpec {
  spec: VmSpec;
  paused: boolean;
  incoming: boolean;
  /** Firmware image loaded at SIM_LAYOUT.firmwareGpa. */
  firmware?: string;
  sev?: { policy: number; godh?: string; session?: string };
}

/** The same guest on both ends of a migration: the spec's identity. */
export function specHash(spec: VmSpec): string {
  const s = [spec.memoryMiB, spec.cpus, spec.kernel ?? '', spec.initrd ?? '', spec.cmdline ?? ''];
  return createHash('sha256').update(JSON.stringify(s)).digest('hex');
}

/** What a direct boot loads: firmware, kernel and initrd bytes and the command line. */
export interface BootImage {
  firmware?: Buffer;
  kernel?: Buffer;
  initrd?: Buffer;
  cmdline: string;
}

export function readBootImage(s: SimVmSpec): BootImage {
  return {
    firmware: s.firmware ? readFileSync(s.firmware) : undefined,
    kernel: s.spec.kernel ? readFileSync(s.spec.kernel) : undefined,
    initrd: s.spec.initrd ? readFileSync(s.spec.initrd) : undefined,
    cmdline: s.spec.cmdline ?? '',
  };
}

/** Loads the boot image into guest memory; returns where the initrd went. */
export function loadBootImage(memory: SimMemory, image: BootImage): void {
  const need = SIM_LAYOUT.kernelGpa + (image.kernel?.length ?? 0) + PAGE_SIZE + (image.initrd?.length ?? 0);
  if (need > memory.bytes / 2) throw new Error(`the boot image needs ${need} bytes: give the VM more memory`);
  if (image.firmware) {
    if (image.firmware.length > SIM_LAYOUT.kernelGpa - SIM_LAYOUT.firmwareGpa)
      throw new Error('the firmware image is too large');
    memory.write(SIM_LAYOUT.firmwareGpa, image.firmware);
  }
  if (image.kernel) memory.write(SIM_LAYOUT.kernelGpa, image.kernel);
  if (image.initrd) {
    const at = Math.ceil((SIM_LAYOUT.kernelGpa + (image.kernel?.length ?? 0)) / PAGE_SIZE) * PAGE_SIZE;
    memory.write(at, image.initrd);
  }
}

/**
 * One simulated VM: guest memory as pages, a workload that dirties it, QEMU's run states and the QMP
 * commands CCM uses, and real pre-copy migration over TCP. An SEV guest's memory and launch are the
 * software secure processor's (see sim-sev.ts).
 */
export class SimVm {
  private runState: RunState;
  private readonly qmp: QmpServer;
  private readonly workload: Workload;
  private settings: SimMigrationSettings = { ...DEFAULT_SETTINGS };
  private outgoing?: OutgoingMigration;
  private incoming?: IncomingMigration;
  private incomingAddress?: { host: string; port: number };
  readonly specHash: string;
  readonly memory: SimMemory;
  private booted = false;

  constructor(
    private readonly s: SimVmSpec,
    paths: { qmpSocket: string; serialLog: string },
    private readonly sev: SimSev | undefined,
    private readonly exit: (code: number, why: string) => void,
    /** `booted`: the guest runs for the first time (a launched VM, not one arriving by migration). */
    private readonly hooks: { booted?: () => void } = {},
  ) {
    this.memory = sev?.memory ?? new PlainMemory(s.spec.memoryMiB * MIB);
    this.specHash = specHash(s.spec);
    this.workload = new Workload(this.memory, paths.serialLog, workloadSettings(s.spec.cmdline));
    this.runState = s.incoming ? 'inmigrate' : s.paused ? 'prelaunch' : 'running';
    this.qmp = new QmpServer(paths.qmpSocket, this.handlers());
  }

  async start(): Promise<void> {
    if (!this.s.incoming && !this.sev) loadBootImage(this.memory, readBootImage(this.s));
    if (this.runState === 'running') this.run();
    await this.qmp.listen();
  }

  emit(event: string, data?: Record<string, unknown>): void {
    this.qmp.emit(event, data);
  }

  private run(): void {
    if (!this.booted) {
      this.booted = true;
      this.workload.boot();
      if (!this.s.incoming) this.hooks.booted?.();
    }
    this.runState = 'running';
    this.workload.start();
  }

  private handlers(): Map<string, QmpHandler> {
    const h = new Map<string, QmpHandler>();
    h.set('query-status', () => ({
      running: this.runState === 'running',
      status: this.runState,
      singlestep: false,
    }));
    h.set('stop', () => {
      if (this.runState !== 'running') return;
      this.workload.stop();
      this.runState = 'paused';
      this.emit('STOP');
    });
    h.set('cont', () => {
      if (this.runState === 'running') return;
      if (this.runState === 'inmigrate' || this.runState === 'finish-migrate') {
        throw new QmpServerError('GenericError', `cannot continue a VM in state ${this.runState}`);
      }
      // As QEMU: a source whose migration completed may run again (a rollback), unless its SEV
      // context was sent (SEND_FINISH leaves it SENT: the firmware only decommissions it then).
      if (this.runState === 'postmigrate' && this.sev && !this.sev.canRun()) {
        throw new QmpServerError('GenericError', 'the SEV guest context is SENT: it cannot run again');
      }
      if (this.runState === 'prelaunch') this.sev?.finishLaunch();
      this.run();
      this.emit('RESUME');
    });
    h.set('quit', () => {
      this.emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
      setTimeout(() => this.exit(0, 'quit'), 10);
    });
    h.set('migrate-set-capabilities', (a) => this.setCapabilities(a));
    h.set('migrate-set-parameters', (a) => this.setParameters(a));
    h.set('query-migrate-parameters', () => ({
      'downtime-limit': this.settings.downtimeLimitMs,
      'max-bandwidth': this.settings.maxBandwidth,
    }));
    h.set('migrate', (a) => this.migrate(str(a, 'uri')));
    h.set('migrate_cancel', () => this.outgoing?.cancel());
    h.set('migrate-continue', () => {
      if (!this.outgoing?.resumeSwitchover())
        throw new QmpServerError('GenericError', 'migration not in pre-switchover state');
    });
    h.set('migrate-start-postcopy', () => {
      if (!this.outgoing?.startPostcopy())
        throw new QmpServerError('GenericError', 'Postcopy must be started after migration has been started');
    });
    h.set('migrate-incoming', (a) => this.listen(str(a, 'uri')));
    h.set('query-migrate', () => {
      if (this.outgoing) return this.outgoing.stats.info();
      if (!this.incoming) return {};
      const a = this.incomingAddress!;
      return {
        ...this.incoming.stats.info(),
        'socket-address': [{ type: 'inet', host: a.host, port: String(a.port), ipv4: true }],
      };
    });
    h.set('query-sev', () => this.needSev().info());
    h.set('query-sev-launch-measure', () => ({ data: this.needSev().measurement() }));
    h.set('sev-inject-launch-secret', (a) => {
      if (this.runState !== 'prelaunch') throw new QmpServerError('GenericError', 'SEV: not in launch state');
      this.needSev().injectSecret(str(a, 'packet-header'), str(a, 'secret'), a['gpa'] as number | undefined);
    });
    // What the hypervisor sees of guest memory (ciphertext for an SEV guest), as QEMU's pmemsave.
    h.set('pmemsave', (a) => {
      const host = this.sev
        ? this.sev.hostView(Number(a['val']), Number(a['size']))
        : this.memory.read(Number(a['val']), Number(a['size']));
      writeFileSync(str(a, 'filename'), host);
    });
    // The simulator's window into the guest: what a program in the guest reads at a guest address.
    h.set('x-ccm-guest-read', (a) => ({
      data: this.memory.read(Number(a['gpa']), Number(a['size'])).toString('base64'),
    }));
    return h;
  }

  private needSev(): SimSev {
    if (!this.sev) throw new QmpServerError('GenericError', 'SEV feature is not available');
    return this.sev;
  }

  private setCapabilities(a: Record<string, unknown>): void {
    if (this.outgoing && !['completed', 'failed', 'cancelled'].includes(this.outgoing.status)) {
      throw new QmpServerError('GenericError', 'There is a migration process in progress');
    }
    const caps = (a['capabilities'] ?? []) as Array<{ capability: string; state: boolean }>;
    for (const { capability, state } of caps) {
      if (capability === 'events') this.settings.events = state;
      else if (capability === 'auto-converge') this.settings.autoConverge = state;
      else if (capability === 'pause-before-switchover') this.settings.pauseBeforeSwitchover = state;
      else if (capability === 'postcopy-ram') this.settings.postcopyRam = state;
      else
        throw new QmpServerError(
          'GenericError',
          `Parameter 'capability' does not accept value '${capability}'`,
        );
    }
  }

  private setParameters(a: Record<string, unknown>): void {
    if (a['downtime-limit'] !== undefined) this.settings.downtimeLimitMs = Number(a['downtime-limit']);
    if (a['max-bandwidth'] !== undefined) this.settings.maxBandwidth = Number(a['max-bandwidth']);
    if (a['sev-pdh'] !== undefined) {
      this.settings.sev = {
        pdh: str(a, 'sev-pdh'),
        platCert: str(a, 'sev-plat-cert'),
        amdCert: str(a, 'sev-amd-cert'),
      };
    }
  }

  private migrate(uri: string): void {
    if (this.outgoing && !['completed', 'failed', 'cancelled'].includes(this.outgoing.status)) {
      throw new QmpServerError('GenericError', "There's a migration process in progress");
    }
    if (this.runState !== 'running' && this.runState !== 'paused') {
      throw new QmpServerError('GenericError', `cannot migrate a VM in state ${this.runState}`);
    }
    const out = new OutgoingMigration(this.source(), uri, { ...this.settings });
    this.outgoing = out;
    void out.run();
  }

  private source() {
    return {
      memory: this.memory,
      specHash: this.specHash,
      emit: (e: string, d?: Record<string, unknown>) => this.emit(e, d),
      stopForMigration: () => {
        const was = this.runState === 'running';
        this.workload.stop();
        this.runState = 'finish-migrate';
        this.emit('STOP');
        return was;
      },
      deviceState: () => this.workload.snapshot(),
      resumeAfterMigration: (wasRunning: boolean) => {
        if (this.runState !== 'finish-migrate') return;
        if (wasRunning) {
          this.run();
          this.emit('RESUME');
        } else this.runState = 'paused';
      },
      completed: () => {
        this.runState = 'postmigrate';
      },
      setThrottle: (p: number) => (this.workload.throttle = p),
      ...(this.sev
        ? {
            sendStart: (t: NonNullable<SimMigrationSettings['sev']>) => this.sev!.sendStart(t),
            sendEnd: (completed: boolean) => this.sev!.sendEnd(completed),
          }
        : {}),
    };
  }

  private async listen(uri: string): Promise<void> {
    if (this.runState !== 'inmigrate' || this.incoming) {
      throw new QmpServerError('GenericError', 'The incoming migration has already been started');
    }
    const m = /^tcp:(.+):(\d+)$/.exec(uri);
    if (!m) throw new QmpServerError('GenericError', `unsupported migration URI ${uri}`);
    const incoming = new IncomingMigration(
      {
        memory: this.memory,
        specHash: this.specHash,
        emit: (e, d) => this.emit(e, d),
        postcopyRam: () => this.settings.postcopyRam,
        ...(this.sev ? { receiveStart: (h: Record<string, unknown>) => this.sev!.receiveStart(h) } : {}),
        completed: (w: WorkloadState, running: boolean) => {
          this.workload.restore(w);
          this.booted = true;
          this.sev?.receiveFinish();
          if (panicsOnArrival(this.s.spec.cmdline)) {
            // A guest that arrives broken: it "runs" (vCPUs spin) but its workload never goes on.
            this.runState = 'running';
            this.workload.console(PANIC_LINE);
            this.emit('RESUME');
          } else if (running) {
            this.run();
            this.emit('RESUME');
          } else this.runState = 'paused';
        },
        failed: (reason) => this.exit(1, `load of migration failed: ${reason}`),
      },
      () => this.settings.events,
    );
    const host = m[1].replace(/^\[|\]$/g, '');
    const port = await incoming.listen(host, Number(m[2]));
    this.incoming = incoming;
    this.incomingAddress = { host, port };
  }
}
