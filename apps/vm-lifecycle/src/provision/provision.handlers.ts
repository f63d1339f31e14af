import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  GUEST_VERBS,
  HOST_COMMANDS,
  hostCommandSubject,
  isCcmError,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LaunchSecretReplySchema,
  LaunchSessionReplySchema,
  RevokeGuestReplySchema,
  STEP_COMMANDS,
  subjects,
  type HostVerb,
  type StepCommand,
  type VmSpec,
} from '@ccm/contracts';
import { MessageBus, OnRequest, type MessageContext } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type EntityManager } from 'typeorm';
import { z } from 'zod';
import { type VmLifecycleConfig } from '../config.js';
import { RegistryQueries } from '../query/registry.queries.js';
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
    private readonly bus: MessageBus,
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
    const session = await this.call(
      keyBrokerSubject(KEY_BROKER_VERBS.launchSession),
      { vmId, hostId: host, workloadId: cmd.workload.id },
      LaunchSessionReplySchema,
      cause,
    );
    const { policy, godh, session: blob } = session;
    const launched = await this.host(
      host,
      'launch',
      { vmId, spec, sev: { policy, godh, session: blob } },
      cause,
    );
    let launchDigest: string | undefined;
    try {
      if (!launched.measurement) {
        throw new CcmError(ErrorCodes.Refused, `host ${host} launched ${vmId} without a measurement`, {
          retryable: false,
        });
      }
      let phase = launched.vm.phase;
      if (phase === 'Paused') {
        const secret = await this.call(
          keyBrokerSubject(KEY_BROKER_VERBS.launchSecret),
          { launchSessionId: session.launchSessionId, measurement: launched.measurement },
          LaunchSecretReplySchema,
          cause,
        );
        launchDigest = secret.launchDigest;
        if (!launched.vm.sev?.secretInjected) {
          await this.host(
            host,
            'inject-secret',
            { vmId, packetHeader: secret.packetHeader, secret: secret.secret },
            cause,
          );
        }
        phase = (
          await this.host(host, 'resume', { vmId, reason: `provisioned for ${cmd.migrationId}` }, cause)
        ).vm.phase;
      }
      if (phase !== 'Running') {
        throw new CcmError(
          ErrorCodes.Conflict,
          `${vmId} on ${host} is ${phase} after its launch, not Running`,
          {
            retryable: false,
          },
        );
      }
      await this.guestUp(vmId, host);
    } catch (err) {
      throw await this.undoLaunch(host, vmId, err, cause);
    }
    await want(m, {
      hostId: host,
      vmId,
      desired: 'Running',
      spec,
      workloads: [cmd.workload.id],
      provisionedBy: cmd.migrationId,
      ...(launchDigest ? { launch: { launchSessionId: session.launchSessionId, launchDigest } } : {}),
    });
    this.log.log(`provisioned ${vmId} on ${host} for ${cmd.workload.id} (${cmd.migrationId})`);
    return { targetVmId: vmId, hostId: host, launchSessionId: session.launchSessionId, ...source };
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
      await this.host(
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
      await this.call(
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

  /**
   * The new guest is up: its guest-agent (started by the guest image's init) answers on its subject.
   * Its attestation is the next step's: the key-broker asks it for fresh evidence before any key.
   */
  private async guestUp(vmId: string, host: string): Promise<void> {
    const deadline = Date.now() + this.config.CCM_GUEST_UP_TIMEOUT_MS;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        const who = await this.bus.request(
          subjects.guestCmd(vmId, GUEST_VERBS.identity),
          {},
          z.object({ vmId: z.string() }).loose(),
          { timeoutMs: Math.min(2_000, Math.max(100, deadline - Date.now())) },
        );
        if (who.vmId === vmId) return;
        last = new Error(`a guest-agent answered as ${who.vmId}`);
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new CcmError(
      ErrorCodes.Unavailable,
      `the guest-agent of ${vmId} on ${host} did not answer within ${this.config.CCM_GUEST_UP_TIMEOUT_MS} ms`,
      { retryable: true, details: { vmId, last: (last as Error | undefined)?.message ?? null } },
    );
  }

  /** A launch that did not end Running is destroyed; the error says whether anything may be left. */
  private async undoLaunch(
    host: string,
    vmId: string,
    err: unknown,
    cause: { causationId: string; correlationId: string },
  ): Promise<CcmError> {
    const e = isCcmError(err)
      ? err
      : new CcmError(ErrorCodes.Internal, (err as Error).message, { cause: err });
    try {
      await this.host(
        host,
        'destroy',
        { vmId, reason: `provisioning failed: ${e.message}`.slice(0, 500) },
        cause,
      );
      return new CcmError(e.code, e.message, {
        retryable: e.retryable,
        effect: 'none',
        details: { ...e.details, targetVmId: vmId, destroyed: true },
      });
    } catch (undo) {
      this.log.warn(`could not destroy ${vmId} on ${host} after a failed launch: ${(undo as Error).message}`);
      return new CcmError(e.code, e.message, {
        retryable: e.retryable,
        effect: 'maybe',
        details: { ...e.details, targetVmId: vmId, destroyed: false },
      });
    }
  }

  private host<V extends HostVerb>(
    hostId: string,
    verb: V,
    data: unknown,
    o: { causationId: string; correlationId: string },
  ): Promise<z.infer<(typeof HOST_COMMANDS)[V]['reply']>> {
    return this.call(
      hostCommandSubject(hostId, verb),
      data,
      HOST_COMMANDS[verb].reply as z.ZodType,
      o,
    ) as Promise<z.infer<(typeof HOST_COMMANDS)[V]['reply']>>;
  }

  private call<S extends z.ZodType>(
    subject: string,
    data: unknown,
    schema: S,
    o: { causationId: string; correlationId: string },
  ): Promise<z.infer<S>> {
    // Keyed by the step command's delivery: the callee's inbox answers a resent call alike, and the
    // next attempt of the step (a new envelope) acts anew on what the callee already has.
    return this.bus.request(subject, data, schema, {
      ...o,
      idempotencyKey: `${o.causationId}:${subject}`,
      timeoutMs: this.config.CCM_PROVISION_CALL_TIMEOUT_MS,
    });
  }
}
