import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  AdmitGuestReplySchema,
  CcmError,
  ErrorCodes,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LaunchVmRequestSchema,
  OPERATOR,
  OVERLAY_VERBS,
  PeerSchema,
  subjects,
  VM_LIFECYCLE_VERBS,
  vmLifecycleSubject,
  type LaunchVmReply,
} from '@ccm/contracts';
import { OnRequest, type MessageContext } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type z } from 'zod';
import { type VmLifecycleConfig } from '../config.js';
import { RegistryQueries } from '../query/registry.queries.js';
import { vmRow, want } from '../registry/store.js';
import { AttestedLaunch, type Cause } from './attested-launch.js';

/**
 * `launch-vm` (operator only): a workload's first confidential VM, outside any migration. The named
 * host must pass placement; the VM gets the same attested launch as a migration's target
 * ({@link AttestedLaunch}); its guest-agent answers; the registry records it wanted `Running` with its
 * workloads and launch. With `overlayId`, the key-broker judges the guest's fresh evidence under the
 * first workload's owner policy (`admit-guest`, which only the vm-lifecycle may ask) and its signed
 * statement admits the guest to that overlay (`admit-peer`); a refused admission destroys the VM.
 * Idempotent by VM id: a VM the registry already wants Running on that host is answered as it is.
 */
@Injectable()
export class LaunchHandlers {
  private readonly log = new Logger('Launch');

  constructor(
    private readonly launcher: AttestedLaunch,
    private readonly queries: RegistryQueries,
    @Inject(SERVICE_CONFIG) private readonly config: VmLifecycleConfig,
  ) {}

  @OnRequest({
    subject: vmLifecycleSubject(VM_LIFECYCLE_VERBS.launchVm),
    schema: LaunchVmRequestSchema,
    idempotent: true,
    allow: [OPERATOR],
  })
  async launchVm(req: z.infer<typeof LaunchVmRequestSchema>, ctx: MessageContext): Promise<LaunchVmReply> {
    const m = ctx.manager!;
    const vmId = req.vmId ?? `cvm-${randomBytes(12).toString('hex')}`;
    // One launch of a VM id at a time across replicas; a repeat waits, then finds it recorded.
    await m.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`vm-lifecycle:vm:${vmId}`]);
    const cause: Cause = { causationId: ctx.envelope.id, correlationId: vmId };
    const [workloadId] = req.workloads;
    const known = await vmRow(m, vmId);
    if (known && known.desired === 'Running') {
      if (known.hostId !== req.host) {
        throw new CcmError(ErrorCodes.Conflict, `${vmId} is already wanted Running on ${known.hostId}`, {
          retryable: false,
          effect: 'none',
          details: { vmId, hostId: known.hostId },
        });
      }
      return {
        vmId,
        hostId: known.hostId,
        launchSessionId: known.launch?.launchSessionId ?? '',
        ...(known.launch ? { launchDigest: known.launch.launchDigest } : {}),
        ...(req.overlayId ? { overlay: await this.admit(vmId, workloadId, req.overlayId, cause) } : {}),
      };
    }
    const spec = req.spec ?? this.config.CCM_CONTAINER_VM_SPEC;
    if (!spec) {
      throw new CcmError(
        ErrorCodes.ValidationFailed,
        `no VM spec for ${vmId}: the request carries none and CCM_CONTAINER_VM_SPEC is not set`,
        { retryable: false, effect: 'none' },
      );
    }
    await this.queries.checkTarget(
      req.host,
      `${vmId} of ${req.workloads.join(',')} on ${req.host}`,
      { memoryMiB: spec.memoryMiB, cpus: spec.cpus },
      m,
    );
    const launched = await this.launcher.launch(
      { host: req.host, vmId, spec, workloadId, reason: `launched by ${ctx.envelope.source}` },
      cause,
    );
    let overlay: LaunchVmReply['overlay'];
    if (req.overlayId) {
      try {
        overlay = await this.admit(vmId, workloadId, req.overlayId, cause);
      } catch (err) {
        throw await this.launcher.undo(req.host, vmId, err, cause);
      }
    }
    const { launchSessionId, launchDigest } = launched;
    await want(m, {
      hostId: req.host,
      vmId,
      desired: 'Running',
      spec,
      workloads: req.workloads,
      ...(launchDigest ? { launch: { launchSessionId, launchDigest } } : {}),
    });
    this.log.log(`launched ${vmId} on ${req.host} for ${req.workloads.join(',')}`);
    return { vmId, hostId: req.host, ...launched, ...(overlay ? { overlay } : {}) };
  }

  /** The key-broker's statement for the guest's attested key, then the overlay admits it. */
  private async admit(
    vmId: string,
    workloadId: string,
    overlayId: string,
    cause: Cause,
  ): Promise<NonNullable<LaunchVmReply['overlay']>> {
    const admitted = await this.launcher.call(
      keyBrokerSubject(KEY_BROKER_VERBS.admitGuest),
      { vmId, workloadId },
      AdmitGuestReplySchema,
      cause,
    );
    const peer = await this.launcher.call(
      subjects.cmd('network-overlay', OVERLAY_VERBS.admitPeer),
      { overlayId, admission: admitted.admission },
      PeerSchema,
      cause,
    );
    return { overlayId, nodeIp: peer.nodeIp, decision: admitted.decision };
  }
}
