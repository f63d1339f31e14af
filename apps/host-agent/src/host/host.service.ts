import { availableParallelism, totalmem } from 'node:os';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import {
  hostEventSubject,
  type DescribeReply,
  type HostCapabilities,
  type HostEventData,
  type PlatformReply,
} from '@ccm/contracts';
import { MessageBus } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type HostAgentConfig } from '../config.js';
import { SevService } from '../sev/sev.service.js';
import { HostStore } from '../store/host-store.js';
import { TransferService } from '../transfer/transfer.service.js';
import { VmService } from '../vm/vm.service.js';

/**
 * The host itself: at start it re-adopts the VMs and migrations a previous agent left, then registers
 * the host (capabilities, SEV chain, what it adopted and what died meanwhile) and sends heartbeats.
 * Commands wait for {@link HostService.ready}, so none acts on a half-adopted host.
 */
@Injectable()
export class HostService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('Host');
  private readonly startedAt = Date.now();
  private heartbeat?: NodeJS.Timeout;
  private seq = 0;
  private markReady!: () => void;
  readonly ready = new Promise<void>((r) => (this.markReady = r));

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    private readonly vms: VmService,
    private readonly transfers: TransferService,
    private readonly sev: SevService,
    private readonly store: HostStore,
    private readonly bus: MessageBus,
  ) {}

  get hostId(): string {
    return this.config.CCM_HOST_ID;
  }

  async onApplicationBootstrap(): Promise<void> {
    const { adopted, died } = await this.vms.adoptAll();
    await this.transfers.resume();
    this.markReady();
    const platform = this.platform();
    await this.store.publishHostEvent('registered', {
      hostId: this.hostId,
      instanceId: this.config.CCM_INSTANCE_ID,
      capabilities: platform.capabilities,
      sev: platform.sev,
      adopted,
      died,
      at: new Date().toISOString(),
    });
    this.log.log(
      `host ${this.hostId} registered: driver ${this.vms.driver.kind} (${this.vms.driver.accelerator.accelerator}` +
        `${this.vms.driver.binary ? `, ${this.vms.driver.binary.banner ?? this.vms.driver.binary.binary}` : ''}), ` +
        `SEV ${platform.capabilities.sevMode}, ${adopted.length} VM(s) re-adopted, ${died.length} died while down`,
    );
    this.heartbeat = setInterval(() => void this.beat(), this.config.CCM_HEARTBEAT_INTERVAL_MS);
    this.heartbeat.unref();
    void this.beat();
  }

  private async beat(): Promise<void> {
    const vms: Record<string, number> = {};
    for (const vm of this.vms.liveVms()) vms[vm.record.phase] = (vms[vm.record.phase] ?? 0) + 1;
    const data: HostEventData<'heartbeat'> = {
      hostId: this.hostId,
      instanceId: this.config.CCM_INSTANCE_ID,
      seq: ++this.seq,
      uptimeMs: Date.now() - this.startedAt,
      vms,
      activeMigrations: this.transfers.activeCount(),
      ...(this.vms.driver.binary ? { hypervisor: this.vms.driver.binary } : {}),
      at: new Date().toISOString(),
    };
    // Liveness, not state: published directly (no outbox row per beat); a missed beat is just missed.
    await this.bus
      .publish(hostEventSubject(this.hostId, 'heartbeat'), { type: 'ccm.host.heartbeat', data })
      .catch((err: unknown) => this.log.debug(`heartbeat ${data.seq} not published: ${String(err)}`));
  }

  capabilities(): HostCapabilities {
    const sp = this.sev.processor;
    const accel = this.vms.driver.accelerator;
    return {
      driver: this.vms.driver.kind,
      accelerator: accel.accelerator,
      acceleratorReason: accel.reason,
      sevMode: sp?.mode ?? 'none',
      sev: !!sp,
      sevEs: sp?.features.sevEs ?? false,
      sevSnp: sp?.features.sevSnp ?? false,
      ...(sp ? { cbitpos: sp.features.cbitpos, reducedPhysBits: sp.features.reducedPhysBits } : {}),
      memoryMiB: Math.floor(totalmem() / (1024 * 1024)),
      cpus: availableParallelism(),
      ...(this.vms.driver.binary ? { hypervisor: this.vms.driver.binary } : {}),
    };
  }

  /** Capabilities and, with SEV, the platform certificate chain (PDH_CERT_EXPORT). */
  platform(): PlatformReply {
    const sp = this.sev.processor;
    return {
      hostId: this.hostId,
      capabilities: this.capabilities(),
      ...(sp ? { sev: { mode: sp.mode, version: sp.version, chain: sp.chain() } } : {}),
    };
  }

  /** Live VMs and migrations from memory (the newest state), ended ones from the database. */
  async describe(req: { vmId?: string; all: boolean }): Promise<DescribeReply> {
    const [vmRows, transferRows] = await Promise.all([
      this.store.listVms(req),
      this.store.listTransfers(req),
    ]);
    const liveVms = new Map(this.vms.liveVms().map((vm) => [vm.vmId, this.vms.view(vm)]));
    const liveTransfers = new Map(this.transfers.liveViews().map((t) => [t.migrationId, t]));
    const vms = vmRows.map((r) => liveVms.get(r.vmId) ?? this.vms.view(r));
    const migrations = transferRows.map((r) => liveTransfers.get(r.migrationId) ?? this.transfers.view(r));
    const hypervisor = this.vms.driver.binary;
    return { hostId: this.hostId, vms, migrations, ...(hypervisor ? { hypervisor } : {}) };
  }

  onApplicationShutdown(): void {
    clearInterval(this.heartbeat);
  }
}
