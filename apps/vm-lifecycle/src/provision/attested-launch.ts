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
  subjects,
  type HostVerb,
  type VmSpec,
} from '@ccm/contracts';
import { MessageBus } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { z } from 'zod';
import { type VmLifecycleConfig } from '../config.js';

/** Causation and correlation of the calls one command makes. */
export interface Cause {
  causationId: string;
  correlationId: string;
}

/** What to launch: a VM id on a host, its spec, the workload whose owner policy attests it. */
export interface LaunchOrder {
  host: string;
  vmId: string;
  spec: VmSpec;
  workloadId: string;
  /** Why it is resumed (the host-agent records it). */
  reason: string;
}

/**
 * The attested launch `provision-vm` and `launch-vm` share: a launch session from the key-broker
 * (which attests the host's chain under the workload's owner policy), `launch` on the host-agent
 * (paused, measured), the measurement checked by the key-broker, which seals the VM's identity secret
 * and disk key, `inject-secret`, `resume`, and the guest-agent inside answering as that VM. A launch
 * that does not end Running with its guest up is destroyed before the error is returned. The host-agent
 * answers a repeated launch of the same VM id and spec with that VM, so a retry finds the same VM.
 */
@Injectable()
export class AttestedLaunch {
  private readonly log = new Logger('AttestedLaunch');

  constructor(
    private readonly bus: MessageBus,
    @Inject(SERVICE_CONFIG) private readonly config: VmLifecycleConfig,
  ) {}

  async launch(o: LaunchOrder, cause: Cause): Promise<{ launchSessionId: string; launchDigest?: string }> {
    const { host, vmId, spec } = o;
    const session = await this.call(
      keyBrokerSubject(KEY_BROKER_VERBS.launchSession),
      { vmId, hostId: host, workloadId: o.workloadId },
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
        phase = (await this.host(host, 'resume', { vmId, reason: o.reason }, cause)).vm.phase;
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
      throw await this.undo(host, vmId, err, cause);
    }
    return { launchSessionId: session.launchSessionId, ...(launchDigest ? { launchDigest } : {}) };
  }

  /**
   * The new guest is up: its guest-agent (started by the guest image's init) answers on its subject.
   * Its attestation is the key-broker's: it asks the guest for fresh evidence before any key or admission.
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

  /**
   * Destroys a launch that did not end as asked (not Running, silent guest, refused admission); the
   * error says whether anything may be left (`effect`, `details.destroyed`).
   */
  async undo(host: string, vmId: string, err: unknown, cause: Cause): Promise<CcmError> {
    const e = isCcmError(err)
      ? err
      : new CcmError(ErrorCodes.Internal, (err as Error).message, { cause: err });
    try {
      await this.host(host, 'destroy', { vmId, reason: `launch failed: ${e.message}`.slice(0, 500) }, cause);
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

  host<V extends HostVerb>(
    hostId: string,
    verb: V,
    data: unknown,
    o: Cause,
  ): Promise<z.infer<(typeof HOST_COMMANDS)[V]['reply']>> {
    return this.call(
      hostCommandSubject(hostId, verb),
      data,
      HOST_COMMANDS[verb].reply as z.ZodType,
      o,
    ) as Promise<z.infer<(typeof HOST_COMMANDS)[V]['reply']>>;
  }

  call<S extends z.ZodType>(subject: string, data: unknown, schema: S, o: Cause): Promise<z.infer<S>> {
    // Keyed by the command's delivery: the callee's inbox answers a resent call alike, and the next
    // attempt of the command (a new envelope) acts anew on what the callee already has.
    return this.bus.request(subject, data, schema, {
      ...o,
      idempotencyKey: `${o.causationId}:${subject}`,
      timeoutMs: this.config.CCM_PROVISION_CALL_TIMEOUT_MS,
      // A host-agent killed mid-launch lost the call: its restart takes the repeat.
      resendEveryMs: this.config.CCM_PROVISION_CALL_RESEND_MS,
    });
  }
}
