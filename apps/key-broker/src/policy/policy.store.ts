import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  canonicalJson,
  CcmError,
  ErrorCodes,
  KeyBrokerErrorCodes,
  OwnerPolicySchema,
  type GetPolicyReply,
  type ListPoliciesReply,
  type OwnerPolicy,
} from '@ccm/contracts';
import { DATA_SOURCE } from '@ccm/persistence';
import { type DataSource, type EntityManager } from 'typeorm';
import { KEY_BROKER_SCHEMA } from '../db/migrations.js';

const t = `"${KEY_BROKER_SCHEMA}".owner_policy`;

interface PolicyRow {
  workload_class: string;
  version: number;
  document: unknown;
  digest: string;
  changed_by: string;
  changed_at: Date;
}

/** SHA-256 of the canonical JSON of a policy: names exactly one document. */
export function policyDigest(policy: OwnerPolicy): string {
  return createHash('sha256').update(canonicalJson(policy)).digest('hex');
}

function toReply(row: PolicyRow): GetPolicyReply {
  return {
    workloadClass: row.workload_class,
    version: row.version,
    digest: row.digest,
    changedBy: row.changed_by,
    changedAt: new Date(row.changed_at).toISOString(),
    // Stored documents were validated on the way in; parsing again keeps the type honest.
    policy: OwnerPolicySchema.parse(row.document),
  };
}

/**
 * The owner's policies, versioned: a change appends a version and never rewrites one, so every verdict
 * can name the exact document it applied. Changes are serialized (one advisory lock) so the rule "a
 * workload belongs to one class" holds across concurrent writers.
 */
@Injectable()
export class PolicyStore {
  constructor(@Inject(DATA_SOURCE) private readonly ds: DataSource) {}

  /**
   * Appends version `expectedVersion + 1` of the policy's class, in the caller's transaction.
   * @throws CcmError CONFLICT when the class is at another version; POLICY_REJECTED when a workload
   * already belongs to another class.
   */
  async put(
    m: EntityManager,
    policy: OwnerPolicy,
    expectedVersion: number,
    by: string,
  ): Promise<GetPolicyReply> {
    await m.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`${KEY_BROKER_SCHEMA}.owner_policy`]);
    const [cur] = await m.query<Array<{ v: number | null }>>(
      `SELECT max(version) AS v FROM ${t} WHERE workload_class = $1`,
      [policy.workloadClass],
    );
    const current = cur?.v ?? 0;
    if (current !== expectedVersion) {
      throw new CcmError(
        ErrorCodes.Conflict,
        `policy ${policy.workloadClass} is at version ${current}, not ${expectedVersion}: read it and retry`,
        { retryable: false, details: { currentVersion: current } },
      );
    }
    const taken = await m.query<Array<{ workload_class: string; workload: string }>>(
      `SELECT p.workload_class, w AS workload FROM (
         SELECT DISTINCT ON (workload_class) workload_class, document FROM ${t}
         ORDER BY workload_class, version DESC) p,
       jsonb_array_elements_text(p.document->'workloads') w
       WHERE p.workload_class <> $1 AND w = ANY($2::text[])`,
      [policy.workloadClass, policy.workloads],
    );
    if (taken.length > 0) {
      throw new CcmError(
        KeyBrokerErrorCodes.PolicyRejected,
        `workloads already in another class: ${taken.map((r) => `${r.workload} (${r.workload_class})`).join(', ')}`,
        { retryable: false, details: { taken } },
      );
    }
    const rows = await m.query<PolicyRow[]>(
      `INSERT INTO ${t} (workload_class, version, document, digest, changed_by)
       VALUES ($1, $2, $3, $4, $5) RETURNING *`,
      [policy.workloadClass, current + 1, JSON.stringify(policy), policyDigest(policy), by],
    );
    return toReply(rows[0]);
  }

  /** A class's latest policy, or one version of it. @throws CcmError POLICY_NOT_FOUND */
  async get(workloadClass: string, version?: number): Promise<GetPolicyReply> {
    const rows = await this.ds.query<PolicyRow[]>(
      version === undefined
        ? `SELECT * FROM ${t} WHERE workload_class = $1 ORDER BY version DESC LIMIT 1`
        : `SELECT * FROM ${t} WHERE workload_class = $1 AND version = $2`,
      version === undefined ? [workloadClass] : [workloadClass, version],
    );
    if (!rows[0]) {
      throw new CcmError(
        KeyBrokerErrorCodes.PolicyNotFound,
        `no policy ${workloadClass}${version === undefined ? '' : ` version ${version}`}`,
        { retryable: false },
      );
    }
    return toReply(rows[0]);
  }

  /** The latest version of every class, by class name. */
  async list(): Promise<ListPoliciesReply> {
    const rows = await this.ds.query<PolicyRow[]>(
      `SELECT DISTINCT ON (workload_class) * FROM ${t} ORDER BY workload_class, version DESC`,
    );
    return {
      policies: rows.map((r) => {
        const { policy, ...version } = toReply(r);
        return { ...version, workloads: policy.workloads };
      }),
    };
  }

  /** The latest policy of the class a workload belongs to, or undefined when none covers it. */
  async forWorkload(
    workloadId: string,
    m: EntityManager | DataSource = this.ds,
  ): Promise<GetPolicyReply | undefined> {
    const rows = await m.query<PolicyRow[]>(
      `SELECT * FROM (
         SELECT DISTINCT ON (workload_class) * FROM ${t} ORDER BY workload_class, version DESC) p
       WHERE p.document->'workloads' ? $1`,
      [workloadId],
    );
    return rows[0] ? toReply(rows[0]) : undefined;
  }
}
