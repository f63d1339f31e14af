import { Inject, Injectable } from '@nestjs/common';
import {
  type ContainerInfo,
  ContainerRefSchema,
  DropKeySchema,
  EvidenceRequestSchema,
  type EvidenceReply,
  GUEST_VERBS,
  type GuestVerb,
  LoadKeySchema,
  LoadSecretSchema,
  MigrationRefSchema,
  RestoreSchema,
  type RoundReport,
  RoundRefSchema,
  RunContainerSchema,
  SendRoundSchema,
  type SignerName,
  subjects,
} from '@ccm/contracts';
import { OnRequest } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { z } from 'zod';
import { GuestAttestation } from '../attest/guest-attestation.js';
import { type GuestAgentConfig } from '../config.js';
import { CheckpointService } from './checkpoint.service.js';

/** Who may drive a guest's checkpoints: container-checkpoint (CALLS in libs/contracts) and the operator. */
const CALLERS: readonly SignerName[] = ['container-checkpoint', 'operator'];

/** Who may attest this guest and hand it (or take away) a migration key: the key-broker alone. */
const KEY_CALLERS: readonly SignerName[] = ['key-broker'];

/** Who may ask the guest who it is: its drivers, and the vm-lifecycle waiting for a new guest to be up. */
const IDENTITY_CALLERS: readonly SignerName[] = [...CALLERS, 'vm-lifecycle'];

const on = (verb: GuestVerb, schema: z.ZodType, allow: readonly SignerName[] = CALLERS) =>
  OnRequest({
    subject: (self) => subjects.guestCmd((self as GuestCommands).vmId, verb),
    schema,
    allow: [...allow],
  });

const Empty = z.object({}).loose();

/**
 * The guest-agent's commands on `ccm.cmd.guest.<vmId>.<verb>`. The guest has no database, so each
 * command is idempotent by what it names (container, migration, round), not by an inbox row.
 */
@Injectable()
export class GuestCommands {
  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig,
    private readonly cp: CheckpointService,
    private readonly attestation: GuestAttestation,
  ) {}

  get vmId(): string {
    return this.config.CCM_VM_ID;
  }

  @on(GUEST_VERBS.identity, Empty, IDENTITY_CALLERS)
  identity(): Promise<{ vmId: string; publicKey: string }> {
    return Promise.resolve({ vmId: this.vmId, publicKey: this.cp.identity.publicKey.toString('base64') });
  }

  @on(GUEST_VERBS.runContainer, RunContainerSchema)
  run(req: z.infer<typeof RunContainerSchema>): Promise<ContainerInfo> {
    const { id, ...spec } = req;
    return this.cp.run(id, spec);
  }

  @on(GUEST_VERBS.listContainers, Empty)
  list(): Promise<{ containers: ContainerInfo[] }> {
    return this.cp.list().then((containers) => ({ containers }));
  }

  @on(GUEST_VERBS.describe, ContainerRefSchema)
  describe(req: z.infer<typeof ContainerRefSchema>): Promise<ContainerInfo> {
    return this.cp.container(req.id);
  }

  @on(GUEST_VERBS.evidence, EvidenceRequestSchema, KEY_CALLERS)
  evidence(req: z.infer<typeof EvidenceRequestSchema>): Promise<EvidenceReply> {
    return Promise.resolve(this.attestation.evidence(req.nonce, req.migrationId));
  }

  /** The key-broker revoked this migration's key (or this guest): forget it. */
  @on(GUEST_VERBS.dropKey, DropKeySchema, KEY_CALLERS)
  dropKey(req: z.infer<typeof DropKeySchema>): Promise<{ dropped: boolean }> {
    return Promise.resolve({ dropped: this.cp.dropKey(req.migrationId) });
  }

  @on(GUEST_VERBS.loadKey, LoadKeySchema, [...KEY_CALLERS, ...CALLERS])
  loadKey(req: z.infer<typeof LoadKeySchema>): Promise<{ keyId: string }> {
    return Promise.resolve(this.cp.loadKey(req.migrationId, req.keyId, Buffer.from(req.sealedKey, 'base64')));
  }

  /** The key-broker issued this workload's secret anew to this guest after the workload moved here. */
  @on(GUEST_VERBS.loadSecret, LoadSecretSchema, KEY_CALLERS)
  loadSecret(
    req: z.infer<typeof LoadSecretSchema>,
  ): Promise<{ secretId: string; generation: number; sha256: string }> {
    return Promise.resolve(
      this.cp.loadSecret(
        req.workloadId,
        req.migrationId,
        req.secretId,
        req.generation,
        Buffer.from(req.sealed, 'base64'),
      ),
    );
  }

  @on(GUEST_VERBS.receive, RoundRefSchema)
  receive(req: z.infer<typeof RoundRefSchema>): Promise<{ host: string; port: number }> {
    return this.cp.receive(req.migrationId, req.containerId, req.round);
  }

  @on(GUEST_VERBS.preDump, SendRoundSchema)
  preDump(req: z.infer<typeof SendRoundSchema>): Promise<RoundReport> {
    return this.cp.sendRound(req.migrationId, req.containerId, req.round, req.target, false);
  }

  @on(GUEST_VERBS.dump, SendRoundSchema)
  dump(req: z.infer<typeof SendRoundSchema>): Promise<RoundReport> {
    return this.cp.sendRound(req.migrationId, req.containerId, req.round, req.target, true);
  }

  @on(GUEST_VERBS.restore, RestoreSchema)
  restore(req: z.infer<typeof RestoreSchema>): Promise<ContainerInfo> {
    return this.cp.restore(req.migrationId, req.containerId, req.rounds, req.resume ?? false);
  }

  @on(GUEST_VERBS.resume, ContainerRefSchema)
  resume(req: z.infer<typeof ContainerRefSchema>): Promise<ContainerInfo> {
    return this.cp.resume(req.id);
  }

  @on(GUEST_VERBS.thaw, ContainerRefSchema)
  thaw(req: z.infer<typeof ContainerRefSchema>): Promise<ContainerInfo> {
    return this.cp.thaw(req.id);
  }

  @on(GUEST_VERBS.kill, ContainerRefSchema)
  kill(req: z.infer<typeof ContainerRefSchema>): Promise<ContainerInfo> {
    return this.cp.kill(req.id);
  }

  @on(GUEST_VERBS.discard, MigrationRefSchema)
  discard(req: z.infer<typeof MigrationRefSchema>): Promise<{ rounds: number }> {
    return this.cp.discard(req.migrationId);
  }
}
