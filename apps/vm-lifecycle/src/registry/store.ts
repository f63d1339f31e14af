import { createHash } from 'node:crypto';
import {
  isFinalVmPhase,
  VM_PHASES,
  type HostEventData,
  type HostRecord,
  type VmRecord,
} from '@ccm/contracts';
import { updateReturning } from '@ccm/persistence';
import { type EntityManager } from 'typeorm';
import { APPLIED, HOST, VM } from '../db/migrations.js';
import { type PlacementHost } from '../placement/placement.js';

const FINAL = VM_PHASES.filter(isFinalVmPhase);

/** Records an event as applied; false when it was applied before (a redelivery or a replay). */
export async function firstApplication(
  m: EntityManager,
  eventId: string,
  subject: string,
  streamSeq: number | undefined,
): Promise<boolean> {
  const rows = await m.query<unknown[]>(
    `INSERT INTO ${APPLIED} (event_id, stream_seq, subject) VALUES ($1, $2, $3)
     ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
    [eventId, streamSeq ?? null, subject],
  );
  return rows.length === 1;
}

/** When the host was last heard of: its own time, never later than ours. */
const seenAt = `LEAST($2::timestamptz, now())`;

/** A registration: the host as it is now. An older registration delivered late changes nothing. */
export async function applyRegistered(m: EntityManager, e: HostEventData<'registered'>): Promise<void> {
  const pdh = e.sev
    ? createHash('sha256').update(Buffer.from(e.sev.chain.pdh, 'base64')).digest('hex')
    : null;
  await m.query(
    `INSERT INTO ${HOST} AS h (host_id, instance_id, capabilities, sev_mode, tcb, pdh_sha256, chain,
       registered_at, last_seen_at, heartbeat_seq, vms, active_migrations)
     VALUES ($1, $3, $4, $5, $6, $7, $8, $2, ${seenAt}, 0, '{}', 0)
     ON CONFLICT (host_id) DO UPDATE SET instance_id = EXCLUDED.instance_id,
       capabilities = EXCLUDED.capabilities, sev_mode = EXCLUDED.sev_mode, tcb = EXCLUDED.tcb,
       pdh_sha256 = EXCLUDED.pdh_sha256, chain = EXCLUDED.chain, registered_at = EXCLUDED.registered_at,
       last_seen_at = GREATEST(h.last_seen_at, EXCLUDED.last_seen_at), heartbeat_seq = 0
     WHERE h.registered_at <= EXCLUDED.registered_at`,
    [
      e.hostId,
      e.at,
      e.instanceId,
      JSON.stringify(e.capabilities),
      e.capabilities.sevMode,
      e.sev ? JSON.stringify(e.sev.version) : null,
      pdh,
      e.sev ? JSON.stringify(e.sev.chain) : null,
    ],
  );
  for (const vmId of e.died) {
    await observe(m, e.hostId, vmId, 'Died', e.at, 'found dead when the host-agent restarted');
  }
}

/**
 * A heartbeat: the host is alive as of its time. Applying one twice, or one older than the last, is a
 * no-op (so heartbeats need no applied-event row). A heartbeat of a host not registered yet is dropped.
 */
export async function applyHeartbeat(m: EntityManager, e: HostEventData<'heartbeat'>): Promise<boolean> {
  const rows = await updateReturning(
    m,
    `UPDATE ${HOST} SET last_seen_at = ${seenAt}, heartbeat_seq = $3, vms = $4, active_migrations = $5
     WHERE host_id = $1 AND last_seen_at <= ${seenAt} RETURNING host_id`,
    [e.hostId, e.at, e.seq, JSON.stringify(e.vms), e.activeMigrations],
  );
  return rows.length > 0;
}

/**
 * A phase the host reported for one of its VMs: appended to the history; it becomes the observed phase
 * unless a later report was applied already (reports may arrive out of order across replicas).
 */
export async function observe(
  m: EntityManager,
  hostId: string,
  vmId: string,
  phase: string,
  at: string,
  reason: string | undefined,
): Promise<void> {
  const entry = JSON.stringify([{ phase, at: new Date(at).toISOString(), ...(reason ? { reason } : {}) }]);
  await m.query(
    `INSERT INTO ${VM} AS v (host_id, vm_id, observed, observed_at, reason, phase_history)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb)
     ON CONFLICT (host_id, vm_id) DO UPDATE SET
       phase_history = v.phase_history || EXCLUDED.phase_history,
       observed = CASE WHEN v.observed_at IS NULL OR v.observed_at <= EXCLUDED.observed_at
                       THEN EXCLUDED.observed ELSE v.observed END,
       reason = CASE WHEN v.observed_at IS NULL OR v.observed_at <= EXCLUDED.observed_at
                     THEN EXCLUDED.reason ELSE v.reason END,
       observed_at = GREATEST(v.observed_at, EXCLUDED.observed_at),
       updated_at = now()`,
    [hostId, vmId, phase, at, reason ?? null, entry],
  );
}

interface HostRow {
  host_id: string;
  instance_id: string;
  capabilities: HostRecord['capabilities'];
  sev_mode: HostRecord['sevMode'];
  tcb: HostRecord['tcb'] | null;
  pdh_sha256: string | null;
  registered_at: Date;
  last_seen_at: Date;
  vms: Record<string, number>;
  active_migrations: number;
  live: boolean;
  allocated_memory: string;
  allocated_cpus: string;
}

/** A VM takes its host's memory and vCPUs until it ends (or, not yet reported, while wanted). */
const TAKES_CAPACITY = `(v.observed IS NULL AND v.desired = 'Running')
  OR (v.observed IS NOT NULL AND v.observed <> ALL($2::text[]))`;

/** Every host with its liveness as of now and what the known VMs there take. */
export async function hostRows(m: EntityManager, livenessTimeoutMs: number): Promise<HostRecord[]> {
  const rows = await m.query<HostRow[]>(
    `SELECT h.*, h.last_seen_at >= now() - make_interval(secs => $1::double precision / 1000) AS live,
       COALESCE((SELECT sum((v.spec->>'memoryMiB')::int) FROM ${VM} v
                  WHERE v.host_id = h.host_id AND v.spec IS NOT NULL AND (${TAKES_CAPACITY})), 0) AS allocated_memory,
       COALESCE((SELECT sum(COALESCE((v.spec->>'cpus')::int, 1)) FROM ${VM} v
                  WHERE v.host_id = h.host_id AND v.spec IS NOT NULL AND (${TAKES_CAPACITY})), 0) AS allocated_cpus
     FROM ${HOST} h ORDER BY h.host_id`,
    [livenessTimeoutMs, FINAL],
  );
  return rows.map((r) => ({
    hostId: r.host_id,
    instanceId: r.instance_id,
    live: r.live,
    registeredAt: r.registered_at.toISOString(),
    lastSeenAt: r.last_seen_at.toISOString(),
    capabilities: r.capabilities,
    sevMode: r.sev_mode,
    ...(r.tcb ? { tcb: r.tcb } : {}),
    ...(r.pdh_sha256 ? { pdhSha256: r.pdh_sha256 } : {}),
    vms: r.vms,
    activeMigrations: r.active_migrations,
    allocatedMemoryMiB: Number(r.allocated_memory),
    allocatedCpus: Number(r.allocated_cpus),
  }));
}

export const placementHost = (h: HostRecord): PlacementHost => ({
  hostId: h.hostId,
  live: h.live,
  sev: h.capabilities.sev,
  sevSnp: h.capabilities.sevSnp,
  ...(h.tcb ? { tcb: h.tcb } : {}),
  memoryMiB: h.capabilities.memoryMiB,
  cpus: h.capabilities.cpus,
  allocatedMemoryMiB: h.allocatedMemoryMiB,
  allocatedCpus: h.allocatedCpus,
});

interface VmRow {
  host_id: string;
  vm_id: string;
  desired: VmRecord['desired'] | null;
  observed: VmRecord['observed'] | null;
  reason: string | null;
  spec: VmRecord['spec'] | null;
  workloads: string[];
  provisioned_by: string | null;
  launch: VmRecord['launch'] | null;
  phase_history: VmRecord['phaseHistory'];
  created_at: Date;
  updated_at: Date;
}

const vmRecord = (r: VmRow): VmRecord => ({
  vmId: r.vm_id,
  hostId: r.host_id,
  ...(r.desired ? { desired: r.desired } : {}),
  ...(r.observed ? { observed: r.observed } : {}),
  ...(r.reason ? { reason: r.reason } : {}),
  ...(r.spec ? { spec: r.spec } : {}),
  workloads: r.workloads,
  ...(r.provisioned_by ? { provisionedBy: r.provisioned_by } : {}),
  ...(r.launch ? { launch: r.launch } : {}),
  phaseHistory: [...r.phase_history].sort((a, b) => Date.parse(a.at) - Date.parse(b.at)),
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export async function vmRows(
  m: EntityManager,
  q: { host?: string; phase?: string; limit: number },
): Promise<VmRecord[]> {
  const rows = await m.query<VmRow[]>(
    `SELECT * FROM ${VM} WHERE ($1::text IS NULL OR host_id = $1) AND ($2::text IS NULL OR observed = $2)
     ORDER BY updated_at DESC, host_id, vm_id LIMIT $3`,
    [q.host ?? null, q.phase ?? null, q.limit],
  );
  return rows.map(vmRecord);
}

/** The VM's record on `host`, or (no host given) the one not ended, else the newest. */
export async function vmRow(m: EntityManager, vmId: string, host?: string): Promise<VmRecord | undefined> {
  const rows = await m.query<VmRow[]>(
    `SELECT * FROM ${VM} WHERE vm_id = $1 AND ($2::text IS NULL OR host_id = $2)
     ORDER BY (observed IS NOT NULL AND observed = ANY($3::text[])), updated_at DESC LIMIT 1`,
    [vmId, host ?? null, FINAL],
  );
  return rows[0] ? vmRecord(rows[0]) : undefined;
}

/** The VM a migration's `provision-vm` launched (locked for the step's transaction). */
export async function provisionedBy(m: EntityManager, migrationId: string): Promise<VmRecord | undefined> {
  const rows = await m.query<VmRow[]>(`SELECT * FROM ${VM} WHERE provisioned_by = $1 FOR UPDATE`, [
    migrationId,
  ]);
  return rows[0] ? vmRecord(rows[0]) : undefined;
}

/** What the registry wants of a VM and what it knows of it (spec, workloads, launch, provenance). */
export async function want(
  m: EntityManager,
  v: {
    hostId: string;
    vmId: string;
    desired: 'Running' | 'Destroyed';
    spec?: VmRecord['spec'];
    workloads?: string[];
    provisionedBy?: string;
    launch?: VmRecord['launch'];
  },
): Promise<void> {
  await m.query(
    `INSERT INTO ${VM} AS v (host_id, vm_id, desired, spec, workloads, provisioned_by, launch)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (host_id, vm_id) DO UPDATE SET desired = EXCLUDED.desired,
       spec = COALESCE(EXCLUDED.spec, v.spec),
       workloads = CASE WHEN $8 THEN EXCLUDED.workloads ELSE v.workloads END,
       provisioned_by = COALESCE(EXCLUDED.provisioned_by, v.provisioned_by),
       launch = COALESCE(EXCLUDED.launch, v.launch), updated_at = now()`,
    [
      v.hostId,
      v.vmId,
      v.desired,
      v.spec ? JSON.stringify(v.spec) : null,
      JSON.stringify(v.workloads ?? []),
      v.provisionedBy ?? null,
      v.launch ? JSON.stringify(v.launch) : null,
      v.workloads !== undefined,
    ],
  );
}

/** The VM that runs `workloadId` on `hostId` and has not ended, if the registry knows one. */
export async function vmRunning(
  m: EntityManager,
  hostId: string,
  workloadId: string,
): Promise<VmRecord | undefined> {
  const rows = await m.query<VmRow[]>(
    `SELECT * FROM ${VM} WHERE host_id = $1 AND workloads ? $2
       AND (observed IS NULL OR observed <> ALL($3::text[])) ORDER BY updated_at DESC LIMIT 1`,
    [hostId, workloadId, FINAL],
  );
  return rows[0] ? vmRecord(rows[0]) : undefined;
}
