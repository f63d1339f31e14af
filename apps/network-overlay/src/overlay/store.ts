import { CcmError, ErrorCodes, type MoveFigures } from '@ccm/contracts';
import { formatCidr, intToIpv4, ipv4ToInt, parseCidr } from '@ccm/wireguard';
import { type EntityManager } from 'typeorm';
import { OVERLAY_SCHEMA } from '../db/migrations.js';
import { type MeshPeer } from './move.js';

const s = `"${OVERLAY_SCHEMA}"`;

export interface WorkloadRow {
  overlayId: string;
  workloadId: string;
  ip: string;
  holder: string;
  port: number;
}

export interface MoveRow {
  migrationId: string;
  overlayId: string;
  workloadId: string;
  ip: string;
  source: string;
  target: string;
  state: 'moved' | 'reverted';
  figures: MoveFigures;
}

const notFound = (what: string) =>
  new CcmError(ErrorCodes.NotFound, what, { retryable: false, effect: 'none' });

/** Creates an overlay; the same id and CIDR again is a no-op. @throws CONFLICT on an overlap or another CIDR. */
export async function insertOverlay(m: EntityManager, overlayId: string, cidr: string): Promise<void> {
  const c = formatCidr(parseCidr(cidr));
  // A savepoint keeps the transaction usable when the exclusion constraint refuses an overlap.
  await m.query('SAVEPOINT create_overlay');
  try {
    await m.query(
      `INSERT INTO ${s}.overlay (overlay_id, cidr) VALUES ($1, $2) ON CONFLICT (overlay_id) DO NOTHING`,
      [overlayId, c],
    );
    await m.query('RELEASE SAVEPOINT create_overlay');
  } catch (err) {
    if ((err as { code?: string }).code !== '23P01') throw err;
    await m.query('ROLLBACK TO SAVEPOINT create_overlay');
    const [other] = await m.query<Array<{ overlay_id: string; cidr: string }>>(
      `SELECT overlay_id, cidr::text AS cidr FROM ${s}.overlay WHERE cidr && $1::cidr`,
      [c],
    );
    throw new CcmError(
      ErrorCodes.Conflict,
      `overlay ${c} overlaps overlay ${other?.overlay_id} (${other?.cidr})`,
      {
        retryable: false,
        effect: 'none',
        details: { overlaps: other?.overlay_id },
      },
    );
  }
  const existing = await lockOverlay(m, overlayId);
  if (existing !== c) {
    throw new CcmError(ErrorCodes.Conflict, `overlay ${overlayId} exists with CIDR ${existing}`, {
      retryable: false,
      effect: 'none',
    });
  }
}

/** Takes the overlay's row lock (one writer per overlay, across replicas); returns its CIDR. */
export async function lockOverlay(m: EntityManager, overlayId: string): Promise<string> {
  const rows = await m.query<Array<{ cidr: string }>>(
    `SELECT cidr::text AS cidr FROM ${s}.overlay WHERE overlay_id = $1 FOR UPDATE`,
    [overlayId],
  );
  if (!rows[0]) throw notFound(`no overlay ${overlayId}`);
  return rows[0].cidr;
}

/**
 * The address of (kind, owner) in an overlay, allocated on first use: the lowest free host address.
 * Call with the overlay locked; the primary key on (overlay, ip) backs the lock up.
 * @throws CONFLICT when the overlay is full.
 */
export async function allocate(
  m: EntityManager,
  a: {
    overlayId: string;
    cidr: string;
    kind: 'node' | 'workload';
    owner: string;
    holder: string;
    port?: number;
  },
): Promise<string> {
  const [mine] = await m.query<Array<{ ip: string }>>(
    `SELECT host(ip) AS ip FROM ${s}.address WHERE overlay_id = $1 AND kind = $2 AND owner_id = $3`,
    [a.overlayId, a.kind, a.owner],
  );
  if (mine) return mine.ip;
  const used = new Set(
    (
      await m.query<Array<{ ip: string }>>(`SELECT host(ip) AS ip FROM ${s}.address WHERE overlay_id = $1`, [
        a.overlayId,
      ])
    ).map((r) => ipv4ToInt(r.ip)),
  );
  const { network, prefix } = parseCidr(a.cidr);
  const size = 2 ** (32 - prefix);
  for (let i = 1; i < size - 1; i++) {
    if (used.has(network + i)) continue;
    const ip = intToIpv4(network + i);
    await m.query(
      `INSERT INTO ${s}.address (overlay_id, ip, kind, owner_id, holder_vm, port) VALUES ($1, $2, $3, $4, $5, $6)`,
      [a.overlayId, ip, a.kind, a.owner, a.holder, a.port ?? null],
    );
    return ip;
  }
  throw new CcmError(ErrorCodes.Conflict, `overlay ${a.overlayId} (${a.cidr}) has no free address`, {
    retryable: false,
    effect: 'none',
  });
}

/** Every admitted peer of an overlay with its node address and the workloads it holds. */
export async function meshPeers(m: EntityManager, overlayId: string): Promise<MeshPeer[]> {
  const rows = await m.query<
    Array<{
      vm_id: string;
      public_key: string;
      endpoint: string | null;
      node_ip: string;
      workloads: string[];
    }>
  >(
    `SELECT p.vm_id, p.public_key, p.endpoint,
            (SELECT host(ip) FROM ${s}.address a WHERE a.overlay_id = p.overlay_id AND a.kind = 'node' AND a.owner_id = p.vm_id) AS node_ip,
            COALESCE((SELECT array_agg(host(ip) ORDER BY ip) FROM ${s}.address a WHERE a.overlay_id = p.overlay_id AND a.kind = 'workload' AND a.holder_vm = p.vm_id), '{}') AS workloads
       FROM ${s}.peer p WHERE p.overlay_id = $1 ORDER BY p.vm_id`,
    [overlayId],
  );
  return rows.map((r) => ({
    vmId: r.vm_id,
    publicKey: r.public_key,
    ...(r.endpoint ? { endpoint: r.endpoint } : {}),
    nodeIp: r.node_ip,
    workloadIps: r.workloads,
  }));
}

export async function peerRow(
  m: EntityManager,
  overlayId: string,
  vmId: string,
): Promise<{ publicKey: string; evidenceDigest: string } | undefined> {
  const [r] = await m.query<Array<{ public_key: string; evidence_digest: string }>>(
    `SELECT public_key, evidence_digest FROM ${s}.peer WHERE overlay_id = $1 AND vm_id = $2`,
    [overlayId, vmId],
  );
  return r && { publicKey: r.public_key, evidenceDigest: r.evidence_digest };
}

export async function upsertPeer(
  m: EntityManager,
  p: {
    overlayId: string;
    vmId: string;
    publicKey: string;
    endpoint?: string;
    evidenceDigest: string;
    admissionId: string;
  },
): Promise<void> {
  try {
    await m.query(
      `INSERT INTO ${s}.peer (overlay_id, vm_id, public_key, endpoint, evidence_digest, admission_id) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (overlay_id, vm_id) DO UPDATE SET public_key = $3, endpoint = $4, evidence_digest = $5, admission_id = $6, admitted_at = now()`,
      [p.overlayId, p.vmId, p.publicKey, p.endpoint ?? null, p.evidenceDigest, p.admissionId],
    );
  } catch (err) {
    if ((err as { code?: string }).code !== '23505') throw err;
    throw new CcmError(ErrorCodes.Conflict, `another peer of overlay ${p.overlayId} has this WireGuard key`, {
      retryable: false,
      effect: 'none',
    });
  }
}

/** Deletes a peer and its node address from an overlay; true when it was there. */
export async function deletePeer(m: EntityManager, overlayId: string, vmId: string): Promise<boolean> {
  await m.query(`DELETE FROM ${s}.address WHERE overlay_id = $1 AND kind = 'node' AND owner_id = $2`, [
    overlayId,
    vmId,
  ]);
  const [, count] = await m.query<[unknown, number]>(
    `DELETE FROM ${s}.peer WHERE overlay_id = $1 AND vm_id = $2`,
    [overlayId, vmId],
  );
  return count > 0;
}

export async function overlaysOf(m: EntityManager, vmId: string): Promise<string[]> {
  const rows = await m.query<Array<{ overlay_id: string }>>(
    `SELECT overlay_id FROM ${s}.peer WHERE vm_id = $1 ORDER BY overlay_id`,
    [vmId],
  );
  return rows.map((r) => r.overlay_id);
}

export async function revocation(m: EntityManager, vmId: string): Promise<string | undefined> {
  const [r] = await m.query<Array<{ reason: string }>>(
    `SELECT reason FROM ${s}.revoked_vm WHERE vm_id = $1`,
    [vmId],
  );
  return r?.reason;
}

export async function insertRevocation(m: EntityManager, vmId: string, reason: string): Promise<void> {
  await m.query(`INSERT INTO ${s}.revoked_vm (vm_id, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [
    vmId,
    reason,
  ]);
}

export async function workloadRow(m: EntityManager, workloadId: string): Promise<WorkloadRow | undefined> {
  const [r] = await m.query<Array<{ overlay_id: string; ip: string; holder_vm: string; port: number }>>(
    `SELECT overlay_id, host(ip) AS ip, holder_vm, port FROM ${s}.address WHERE kind = 'workload' AND owner_id = $1`,
    [workloadId],
  );
  return r && { overlayId: r.overlay_id, workloadId, ip: r.ip, holder: r.holder_vm, port: r.port };
}

export async function setHolder(
  m: EntityManager,
  overlayId: string,
  ip: string,
  vmId: string,
): Promise<void> {
  await m.query(`UPDATE ${s}.address SET holder_vm = $3 WHERE overlay_id = $1 AND ip = $2`, [
    overlayId,
    ip,
    vmId,
  ]);
}

export async function moveRow(m: EntityManager, migrationId: string): Promise<MoveRow | undefined> {
  const [r] = await m.query<Array<Record<string, unknown>>>(
    `SELECT * , host(ip) AS host_ip FROM ${s}.move WHERE migration_id = $1`,
    [migrationId],
  );
  if (!r) return undefined;
  return {
    migrationId,
    overlayId: r['overlay_id'] as string,
    workloadId: r['workload_id'] as string,
    ip: r['host_ip'] as string,
    source: r['source_vm'] as string,
    target: r['target_vm'] as string,
    state: r['state'] as MoveRow['state'],
    figures: r['figures'] as MoveFigures,
  };
}

export async function saveMove(m: EntityManager, r: MoveRow): Promise<void> {
  await m.query(
    `INSERT INTO ${s}.move (migration_id, overlay_id, workload_id, ip, source_vm, target_vm, state, figures) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (migration_id) DO UPDATE SET state = $7, figures = $8, target_vm = $6, source_vm = $5,
       reverted_at = CASE WHEN $7 = 'reverted' THEN now() ELSE NULL END`,
    [r.migrationId, r.overlayId, r.workloadId, r.ip, r.source, r.target, r.state, JSON.stringify(r.figures)],
  );
}
