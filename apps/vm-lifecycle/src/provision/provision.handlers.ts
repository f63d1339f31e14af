import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  isCcmError,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  RevokeGuestReplySchema,
  STEP_COMMANDS,
  subjects,
  type StepCommand,
  type VmSpec,
} from '@ccm/contracts';
import { OnRequest, type MessageContext } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type EntityManager } from 'typeorm';
import { type VmLifecycleConfig } from '../config.js';
import { RegistryQueries } from '../query/registry.queries.js';
import { AttestedLaunch } from './attested-launch.js';
import { provisionedBy, vmRow, vmRunning, want } from '../registry/store.js';

const STEPS = STEP_COMMANDS['vm-lifecycle'];
const step = (verb: keyof typeof STEPS) =>
  OnRequest({
    subject: subjects.cmd('vm-lifecycle', verb),
    schema: STEPS[verb].request,
    idempotent: true,
    allow: ['saga-coordinator'],
  });

/** The target VM of a migration: one per migration, the same id on every attempt. */
export function targetVmIdFor(migrationId: string): string {
  return `cvm-${createHash('sha256').update(migrationId).digest('hex').slice(0, 24)}`;
}

/**
 * Serializes the steps of one migration across replicas (an attempt resent while the last one still
 * runs waits for it, then finds its work done): a transaction-scoped advisory lock on the migration id.
 */
async function oneAtATime(m: EntityManager, migrationId: string): Promise<void> {
  await m.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`vm-lifecycle:${migrationId}`]);
}

/**
 * The container saga's `provision-vm` and its compensation `destroy-vm` (STEP_COMMANDS['vm-lifecycle']).
 * `provision-vm` checks the target host with placement (live, SEV, TCB not below the source's, room,
 * not the source), then runs an attested launch there: a launch session from the key-broker (which
 * attests the host's chain under the workload's owner policy), `launch` on the target host-agent
 * (paused, measured), the measurement checked by the key-broker, which seals the VM's identity secret
 * and disk key, `inject-secret`, `resume`. The VM's id follows from the migration id, so a retry (a
 * new attempt after an ambiguous timeout) finds the same VM: the host-agent answers a repeated launch
 * of the same spec with the same VM. `destroy-vm` destroys it on its host and is idempotent.
 */
@Injectable()
export class ProvisionHandlers {
  private readonly log = new Logger('Provision');

  constructor(
    private readonly launcher: AttestedLaunch,
    private readonly queries: RegistryQueries,
    @Inject(SERVICE_CONFIG) private readonly config: VmLifecycleConfig,
  ) {}

  @step('provision-vm')
  async provision(cmd: StepCommand, ctx: MessageContext) {
    const m = ctx.manager!;
    await oneAtATime(m, cmd.migrationId);
    const done = await provisionedBy(m, cmd.migrationId);
    const sourceVmId = cmd.context.sourceVmId ?? (await vmRunning(m, cmd.sourceHost, cmd.workload.id))?.vmId;
    const source = sourceVmId ? { sourceVmId } : {};
    if (done && done.desired === 'Running') return { targetVmId: done.vmId, hostId: done.hostId, ...source };
    const spec = await this.specFor(m, cmd, sourceVmId);
    const host = cmd.targetHost;
    const vmId = targetVmIdFor(cmd.migrationId);
    await this.queries.checkTarget(
      host,
      `${vmId} of ${cmd.workload.id} on ${host}`,
      { memoryMiB: spec.memoryMiB, cpus: spec.cpus, sourceHost: cmd.sourceHost },
      m,
    );
    const cause = { causationId: ctx.envelope.id, correlationId: cmd.migrationId };
    const { launchSessionId, launchDigest } = await this.launcher.launch(
      { host, vmId, spec, workloadId: cmd.workload.id, reason: `provisioned for ${cmd.migrationId}` },
      cause,
    );
    await want(m, {
      hostId: host,
      vmId,
      desired: 'Running',
      spec,
      workloads: [cmd.workload.id],
      provisionedBy: cmd.migrationId,
      ...(launchDigest ? { launch: { launchSessionId, launchDigest } } : {}),
    });
    this.log.log(`provisioned ${vmId} on ${host} for ${cmd.workload.id} (${cmd.migrationId})`);
    return { targetVmId: vmId, hostId: host, launchSessionId, ...source };
  }

  /**
   * Destroys the migration's target VM on its host: the one the registry recorded, else the id that
   * `provision-vm` would have used (its launch may have happened without being recorded). Only that VM:
   * never another VM the context names. Unknown to the host: nothing was launched.
   */
  @step('destroy-vm')
  async destroy(cmd: StepCommand, ctx: MessageContext) {
    const m = ctx.manager!;
    await oneAtATime(m, cmd.migrationId);
    const row = await provisionedBy(m, cmd.migrationId);
    const host = row?.hostId ?? cmd.targetHost;
    const vmId = row?.vmId ?? targetVmIdFor(cmd.migrationId);
    const reason = `compensation of ${cmd.migrationId}`;
    let destroyed = true;
    try {
      await this.launcher.host(
        host,
        'destroy',
        { vmId, reason },
        { causationId: ctx.envelope.id, correlationId: cmd.migrationId },
      );
    } catch (err) {
      if (!isCcmError(err, ErrorCodes.NotFound)) throw err;
      destroyed = false;
    }
    if (row || destroyed) {
      await want(m, { hostId: host, vmId, desired: 'Destroyed' });
      // Its identity ends with it (ARCHITECTURE §9 step 6, after a rollback): the key-broker refuses
      // its evidence from now on and scrubs its launch secrets.
      await this.launcher.call(
        keyBrokerSubject(KEY_BROKER_VERBS.revokeGuest),
        { vmId, reason },
        RevokeGuestReplySchema,
        { causationId: ctx.envelope.id, correlationId: cmd.migrationId },
      );
    }
    return { targetVmId: vmId, hostId: host, destroyed, identityRevoked: Boolean(row || destroyed) };
  }

  /**
   * The spec the target VM gets: the saga's `vmSpec`, else that of the VM the workload runs in now
   * (the source VM as the registry knows it), else CCM's container guest (CCM_CONTAINER_VM_SPEC).
   */
  private async specFor(m: EntityManager, cmd: StepCommand, sourceVmId?: string): Promise<VmSpec> {
    if (cmd.context.vmSpec) return cmd.context.vmSpec;
    const source = sourceVmId
      ? await vmRow(m, sourceVmId, cmd.sourceHost)
      : await vmRunning(m, cmd.sourceHost, cmd.workload.id);
    if (source?.spec) return source.spec;
    if (this.config.CCM_CONTAINER_VM_SPEC) return this.config.CCM_CONTAINER_VM_SPEC;
    throw new CcmError(
      ErrorCodes.ValidationFailed,
      `no VM spec for ${cmd.workload.id}: the command carries no context.vmSpec, the registry knows no VM ` +
        `on ${cmd.sourceHost} that runs it and CCM_CONTAINER_VM_SPEC is not set`,
      { retryable: false, effect: 'none' },
    );
  }
}
