import { Inject, Injectable } from '@nestjs/common';
import {
  hostEventSubject,
  isFinalTransferPhase,
  isFinalVmPhase,
  transferEventSubject,
  type HostEventData,
  type TransferEventData,
  type TransferEventName,
} from '@ccm/contracts';
import { OutboxService } from '@ccm/messaging';
import { DATA_SOURCE } from '@ccm/persistence';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type DataSource, type EntityManager } from 'typeorm';
import { type HostAgentConfig } from '../config.js';
import { HOST_AGENT_SCHEMA } from './migrations.js';
import { type TransferRecord, type VmRecord } from './records.js';

const vmTable = `"${HOST_AGENT_SCHEMA}".vm`;
const transferTable = `"${HOST_AGENT_SCHEMA}".transfer`;
/** Ended VMs and migrations `describe` lists without `all`. */
const RECENT_ENDED = 50;

/** A transfer event to write with a transfer's state change. */
export type TransferEvent = {
  [N in TransferEventName]: { name: N; data: Omit<TransferEventData<N>, 'at'> };
}[TransferEventName];

interface VmRow {
  vm_id: string;
  driver: VmRecord['driver'];
  origin: VmRecord['origin'];
  phase: VmRecord['phase'];
  reason: string | null;
  spec: VmRecord['spec'];
  sev: VmRecord['sev'] | null;
  pid: number | null;
  run_dir: string;
  incoming_uri: string | null;
  migration_id: string | null;
  guest_net: VmRecord['guestNet'] | null;
  resume_blocked: VmRecord['resumeBlocked'] | null;
  guest_net_lent_at: Date | null;
  created_at: Date;
  phase_changed_at: Date;
}

interface TransferRow {
  migration_id: string;
  vm_id: string;
  phase: TransferRecord['phase'];
  uri: string;
  params: TransferRecord['params'];
  step: string | null;
  progress: TransferRecord['progress'] | null;
  figures: TransferRecord['figures'] | null;
  postcopy: TransferRecord['postcopy'] | null;
  error_code: string | null;
  reason: string | null;
  started_at: Date;
  phase_changed_at: Date;
  ended_at: Date | null;
}

const fromVmRow = (r: VmRow): VmRecord => ({
  vmId: r.vm_id,
  driver: r.driver,
  origin: r.origin,
  phase: r.phase,
  ...(r.reason ? { reason: r.reason } : {}),
  spec: r.spec,
  ...(r.sev ? { sev: r.sev } : {}),
  ...(r.pid ? { pid: r.pid } : {}),
  runDir: r.run_dir,
  ...(r.incoming_uri ? { incomingUri: r.incoming_uri } : {}),
  ...(r.migration_id ? { migrationId: r.migration_id } : {}),
  ...(r.guest_net ? { guestNet: r.guest_net } : {}),
  ...(r.resume_blocked ? { resumeBlocked: r.resume_blocked } : {}),
  ...(r.guest_net_lent_at ? { guestNetLentAt: new Date(r.guest_net_lent_at) } : {}),
  createdAt: new Date(r.created_at),
  phaseChangedAt: new Date(r.phase_changed_at),
});

const fromTransferRow = (r: TransferRow): TransferRecord => ({
  migrationId: r.migration_id,
  vmId: r.vm_id,
  phase: r.phase,
  uri: r.uri,
  params: r.params,
  ...(r.step ? { step: r.step } : {}),
  ...(r.progress ? { progress: r.progress } : {}),
  ...(r.figures ? { figures: r.figures } : {}),
  ...(r.postcopy ? { postcopy: r.postcopy } : {}),
  ...(r.error_code ? { errorCode: r.error_code } : {}),
  ...(r.reason ? { reason: r.reason } : {}),
  startedAt: new Date(r.started_at),
  phaseChangedAt: new Date(r.phase_changed_at),
  ...(r.ended_at ? { endedAt: new Date(r.ended_at) } : {}),
});

/**
 * The `vm` and `transfer` tables. Every change is written with the events it causes in one transaction
 * (through the outbox), and a phase change also appends to the row's phase history.
 */
@Injectable()
export class HostStore {
  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    private readonly outbox: OutboxService,
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
  ) {}

  get hostId(): string {
    return this.config.CCM_HOST_ID;
  }

  /**
   * Writes a VM's state. `prev` is what was last written (undefined for a new VM or a reused id, which
   * restarts its history); a phase change publishes `vm-changed`.
   */
  async saveVm(next: VmRecord, prev: VmRecord | undefined): Promise<void> {
    const changed = !prev || prev.phase !== next.phase;
    await this.outbox.transaction(async (m) => {
      await m.query(
        `INSERT INTO ${vmTable} (vm_id, driver, origin, phase, reason, spec, sev, pid, run_dir, incoming_uri,
           migration_id, phase_history, created_at, phase_changed_at, updated_at, host_id, guest_net,
           resume_blocked, guest_net_lent_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '[]', $12, $13, now(), $15, $16, $17, $18)
         ON CONFLICT (host_id, vm_id) DO UPDATE SET driver = $2, origin = $3, phase = $4, reason = $5, spec = $6,
           sev = $7, pid = $8, run_dir = $9, incoming_uri = $10, migration_id = $11, guest_net = $16,
           resume_blocked = $17, guest_net_lent_at = $18,
           phase_history = CASE WHEN $14 THEN '[]'::jsonb ELSE ${vmTable}.phase_history END,
           created_at = $12, phase_changed_at = $13, updated_at = now()`,
        [
          next.vmId,
          next.driver,
          next.origin,
          next.phase,
          next.reason ?? null,
          JSON.stringify(next.spec),
          next.sev ? JSON.stringify(next.sev) : null,
          next.pid ?? null,
          next.runDir,
          next.incomingUri ?? null,
          next.migrationId ?? null,
          next.createdAt,
          next.phaseChangedAt,
          !prev,
          this.hostId,
          next.guestNet ? JSON.stringify(next.guestNet) : null,
          next.resumeBlocked ? JSON.stringify(next.resumeBlocked) : null,
          next.guestNetLentAt ?? null,
        ],
      );
      if (!changed) return;
      await this.appendHistory(m, vmTable, 'vm_id', next.vmId, next.phase, next.phaseChangedAt, next.reason);
      await this.hostEvent(m, 'vm-changed', {
        hostId: this.hostId,
        vmId: next.vmId,
        phase: next.phase,
        ...(prev ? { previous: prev.phase } : {}),
        ...(next.reason ? { reason: next.reason } : {}),
        ...(next.pid ? { pid: next.pid } : {}),
        ...(next.migrationId ? { migrationId: next.migrationId } : {}),
        at: next.phaseChangedAt.toISOString(),
      });
    });
  }

  /** Writes a migration's state and the transfer events it causes, in one transaction. */
  async saveTransfer(
    next: TransferRecord,
    prev: TransferRecord | undefined,
    events: readonly TransferEvent[] = [],
  ): Promise<void> {
    await this.outbox.transaction(async (m) => {
      await m.query(
        `INSERT INTO ${transferTable} (migration_id, vm_id, phase, uri, params, step, progress, figures,
           error_code, reason, phase_history, started_at, phase_changed_at, ended_at, updated_at, host_id, postcopy)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '[]', $11, $12, $13, now(), $14, $15)
         ON CONFLICT (host_id, migration_id) DO UPDATE SET phase = $3, progress = $7, figures = $8, error_code = $9,
           reason = $10, phase_changed_at = $12, ended_at = $13, updated_at = now(), postcopy = $15`,
        [
          next.migrationId,
          next.vmId,
          next.phase,
          next.uri,
          JSON.stringify(next.params),
          next.step ?? null,
          next.progress ? JSON.stringify(next.progress) : null,
          next.figures ? JSON.stringify(next.figures) : null,
          next.errorCode ?? null,
          next.reason ?? null,
          next.startedAt,
          next.phaseChangedAt,
          next.endedAt ?? null,
          this.hostId,
          next.postcopy ? JSON.stringify(next.postcopy) : null,
        ],
      );
      if (!prev || prev.phase !== next.phase) {
        await this.appendHistory(
          m,
          transferTable,
          'migration_id',
          next.migrationId,
          next.phase,
          next.phaseChangedAt,
          next.reason,
        );
      }
      const at = new Date().toISOString();
      for (const e of events) {
        await this.outbox.enqueue(m, transferEventSubject(next.migrationId, e.name), {
          type: `ccm.transfer.${e.name}`,
          correlationid: next.migrationId,
          data: { ...e.data, at },
        });
      }
    });
  }

  /** Publishes a host event through the outbox in its own transaction. */
  async publishHostEvent<N extends 'registered'>(name: N, data: HostEventData<N>): Promise<void> {
    await this.outbox.transaction((m) => this.hostEvent(m, name, data));
  }

  private async hostEvent<N extends 'registered' | 'vm-changed'>(
    m: EntityManager,
    name: N,
    data: HostEventData<N>,
  ): Promise<void> {
    await this.outbox.enqueue(m, hostEventSubject(this.hostId, name), { type: `ccm.host.${name}`, data });
  }

  private async appendHistory(
    m: EntityManager,
    table: string,
    key: string,
    id: string,
    phase: string,
    at: Date,
    reason: string | undefined,
  ): Promise<void> {
    await m.query(
      `UPDATE ${table} SET phase_history = phase_history || jsonb_build_array(jsonb_strip_nulls(
         jsonb_build_object('phase', $2::text, 'at', $3::timestamptz, 'reason', $4::text)))
       WHERE host_id = $5 AND ${key} = $1`,
      [id, phase, at, reason ?? null, this.hostId],
    );
  }

  async loadVm(vmId: string): Promise<VmRecord | undefined> {
    const rows = await this.ds.query<VmRow[]>(`SELECT * FROM ${vmTable} WHERE host_id = $1 AND vm_id = $2`, [
      this.hostId,
      vmId,
    ]);
    return rows[0] && fromVmRow(rows[0]);
  }

  /** VMs with a process (or being started), oldest first. */
  async loadLiveVms(): Promise<VmRecord[]> {
    const rows = await this.ds.query<VmRow[]>(
      `SELECT * FROM ${vmTable} WHERE host_id = $1 ORDER BY created_at`,
      [this.hostId],
    );
    return rows.map(fromVmRow).filter((r) => !isFinalVmPhase(r.phase));
  }

  /** VMs whose guest address is lent here (they moved away, or are coming back and not yet here). */
  async loadLent(): Promise<VmRecord[]> {
    const rows = await this.ds.query<VmRow[]>(
      `SELECT * FROM ${vmTable} WHERE host_id = $1 AND guest_net_lent_at IS NOT NULL AND guest_net IS NOT NULL`,
      [this.hostId],
    );
    return rows.map(fromVmRow);
  }

  /**
   * Ends the lending of `vmId`'s guest address, lent at `lentAt`, if the VM has no process here (a final
   * phase) and is lent since then still: true when this call ended it.
   */
  async endLending(vmId: string, lentAt: Date, finalPhases: readonly string[]): Promise<boolean> {
    const [, count] = await this.ds.query<[unknown, number]>(
      `UPDATE ${vmTable} SET guest_net_lent_at = NULL, updated_at = now()
       WHERE host_id = $1 AND vm_id = $2 AND guest_net_lent_at = $3 AND phase = ANY($4::text[])`,
      [this.hostId, vmId, lentAt, finalPhases],
    );
    return count > 0;
  }

  /** Live VMs plus the most recently ended (all of them with `all`). */
  async listVms(opts: { all: boolean; vmId?: string }): Promise<VmRecord[]> {
    const rows = await this.ds.query<VmRow[]>(
      `SELECT * FROM ${vmTable} WHERE host_id = $2 AND ($1::text IS NULL OR vm_id = $1)
       ORDER BY phase_changed_at DESC`,
      [opts.vmId ?? null, this.hostId],
    );
    return recentFirst(rows.map(fromVmRow), (r) => isFinalVmPhase(r.phase), opts.all);
  }

  async loadTransfer(migrationId: string): Promise<TransferRecord | undefined> {
    const rows = await this.ds.query<TransferRow[]>(
      `SELECT * FROM ${transferTable} WHERE host_id = $1 AND migration_id = $2`,
      [this.hostId, migrationId],
    );
    return rows[0] && fromTransferRow(rows[0]);
  }

  async loadLiveTransfers(): Promise<TransferRecord[]> {
    const rows = await this.ds.query<TransferRow[]>(
      `SELECT * FROM ${transferTable} WHERE host_id = $1 AND ended_at IS NULL ORDER BY started_at`,
      [this.hostId],
    );
    return rows.map(fromTransferRow).filter((r) => !isFinalTransferPhase(r.phase));
  }

  async listTransfers(opts: { all: boolean; vmId?: string }): Promise<TransferRecord[]> {
    const rows = await this.ds.query<TransferRow[]>(
      `SELECT * FROM ${transferTable} WHERE host_id = $2 AND ($1::text IS NULL OR vm_id = $1)
       ORDER BY started_at DESC`,
      [opts.vmId ?? null, this.hostId],
    );
    return recentFirst(rows.map(fromTransferRow), (r) => isFinalTransferPhase(r.phase), opts.all);
  }
}

function recentFirst<T>(rows: T[], ended: (r: T) => boolean, all: boolean): T[] {
  if (all) return rows;
  let kept = 0;
  return rows.filter((r) => !ended(r) || kept++ < RECENT_ENDED);
}
