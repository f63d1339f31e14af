import { Inject, Injectable } from '@nestjs/common';
import {
  DescribeRequestSchema,
  HOST_VERBS,
  InjectSecretRequestSchema,
  LaunchRequestSchema,
  PlatformRequestSchema,
  PrepareIncomingRequestSchema,
  ResumeRequestSchema,
  StartMigrationRequestSchema,
  subjects,
  TransferCommandRequestSchema,
  VmCommandRequestSchema,
  type DescribeReply,
  type HostVerb,
  type LaunchReply,
  type PlatformReply,
  type PrepareIncomingReply,
  type SignerName,
  type TransferReply,
} from '@ccm/contracts';
import { OnRequest } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type z } from 'zod';
import { type HostAgentConfig } from '../config.js';
import { toCcmError } from '../errors.js';
import { TransferService } from '../transfer/transfer.service.js';
import { VmService } from '../vm/vm.service.js';
import { HostService } from './host.service.js';

/** Who may drive a host: the services that call hosts (CALLS in libs/contracts) and the operator CLI. */
const CALLERS: readonly SignerName[] = ['vm-lifecycle', 'saga-coordinator', 'operator'];

/** The platform chain is public evidence: the key-broker also fetches it, to attest the host itself. */
const PLATFORM_READERS: readonly SignerName[] = [...CALLERS, 'key-broker'];

const on = (verb: HostVerb, schema: z.ZodType, idempotent = true, allow = CALLERS) =>
  OnRequest({
    subject: (self) => subjects.hostCmd((self as HostCommands).hostId, verb),
    schema,
    idempotent,
    allow,
  });

/**
 * The host-agent's commands on `ccm.cmd.host.<hostId>.<verb>`. Every command is idempotent twice over:
 * the inbox returns the first reply to a repeated idempotency key, and each operation is keyed by its
 * VM or migration id (a repeated launch of the same VM answers with the VM as it is). The queries
 * (`platform`, `describe`) change nothing, so they skip the inbox. Failures reply typed errors.
 */
@Injectable()
export class HostCommands {
  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    private readonly host: HostService,
    private readonly vms: VmService,
    private readonly transfers: TransferService,
  ) {}

  get hostId(): string {
    return this.config.CCM_HOST_ID;
  }

  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    await this.host.ready;
    try {
      return await fn();
    } catch (err) {
      throw toCcmError(err, what);
    }
  }

  @on(HOST_VERBS.platform, PlatformRequestSchema, false, PLATFORM_READERS)
  platform(): Promise<PlatformReply> {
    return this.run('platform', () => Promise.resolve(this.host.platform()));
  }

  @on(HOST_VERBS.describe, DescribeRequestSchema, false)
  describe(req: z.infer<typeof DescribeRequestSchema>): Promise<DescribeReply> {
    return this.run('describe', () => this.host.describe(req));
  }

  @on(HOST_VERBS.launch, LaunchRequestSchema)
  launch(req: z.infer<typeof LaunchRequestSchema>): Promise<LaunchReply> {
    return this.run(`launch ${req.vmId}`, () => this.vms.launch(req));
  }

  @on(HOST_VERBS.injectSecret, InjectSecretRequestSchema)
  async injectSecret(req: z.infer<typeof InjectSecretRequestSchema>) {
    return { vm: await this.run(`inject-secret ${req.vmId}`, () => this.vms.injectSecret(req)) };
  }

  @on(HOST_VERBS.pause, VmCommandRequestSchema)
  async pause(req: z.infer<typeof VmCommandRequestSchema>) {
    return { vm: await this.run(`pause ${req.vmId}`, () => this.vms.pause(req.vmId)) };
  }

  @on(HOST_VERBS.resume, ResumeRequestSchema)
  async resume(req: z.infer<typeof ResumeRequestSchema>) {
    return { vm: await this.run(`resume ${req.vmId}`, () => this.vms.resume(req.vmId, req)) };
  }

  @on(HOST_VERBS.destroy, VmCommandRequestSchema)
  async destroy(req: z.infer<typeof VmCommandRequestSchema>) {
    return { vm: await this.run(`destroy ${req.vmId}`, () => this.vms.destroy(req.vmId, req.reason)) };
  }

  @on(HOST_VERBS.prepareIncoming, PrepareIncomingRequestSchema)
  prepareIncoming(req: z.infer<typeof PrepareIncomingRequestSchema>): Promise<PrepareIncomingReply> {
    return this.run(`prepare-incoming ${req.vmId}`, () => this.vms.prepareIncoming(req));
  }

  @on(HOST_VERBS.startMigration, StartMigrationRequestSchema)
  async startMigration(req: z.infer<typeof StartMigrationRequestSchema>): Promise<TransferReply> {
    return {
      migration: await this.run(`start-migration ${req.migrationId}`, () => this.transfers.start(req)),
    };
  }

  @on(HOST_VERBS.continue, TransferCommandRequestSchema)
  async continue(req: z.infer<typeof TransferCommandRequestSchema>): Promise<TransferReply> {
    return {
      migration: await this.run(`continue ${req.migrationId}`, () =>
        this.transfers.continue(req.migrationId),
      ),
    };
  }

  @on(HOST_VERBS.cancel, TransferCommandRequestSchema)
  async cancel(req: z.infer<typeof TransferCommandRequestSchema>): Promise<TransferReply> {
    return {
      migration: await this.run(`cancel ${req.migrationId}`, () =>
        this.transfers.cancel(req.migrationId, req.reason),
      ),
    };
  }
}
