import { Inject, Injectable } from '@nestjs/common';
import {
  HOST_STEP_COMMANDS,
  subjects,
  type HostStepVerb,
  type SignerName,
  type StepCommand,
} from '@ccm/contracts';
import { OnRequest } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type HostAgentConfig } from '../config.js';
import { toCcmError } from '../errors.js';
import { HostService } from '../host/host.service.js';
import { HostSteps } from './host-steps.service.js';

/** Only the coordinator drives a migration saga; an operator or another service gets UNAUTHORIZED. */
const SAGA: readonly SignerName[] = ['saga-coordinator'];

/**
 * Waits (convergence, completion, the guest's progress) run outside the inbox transaction: they are
 * idempotent by migration id and may take minutes. The steps that change something use the inbox.
 */
const on = (verb: HostStepVerb, idempotent: boolean) =>
  OnRequest({
    subject: (self) => subjects.hostStep((self as HostStepCommands).hostId, verb),
    schema: HOST_STEP_COMMANDS[verb].request,
    idempotent,
    allow: SAGA,
  });

/** The saga's host-agent step commands on `ccm.cmd.host.<hostId>.step.<verb>`. */
@Injectable()
export class HostStepCommands {
  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
    private readonly host: HostService,
    private readonly steps: HostSteps,
  ) {}

  get hostId(): string {
    return this.config.CCM_HOST_ID;
  }

  private async run<T>(cmd: StepCommand, fn: () => Promise<T>): Promise<T> {
    await this.host.ready;
    try {
      return await fn();
    } catch (err) {
      throw toCcmError(err, `${cmd.step} ${cmd.kind} of ${cmd.migrationId}`);
    }
  }

  @on('prepare-incoming', true)
  prepareIncoming(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.prepareIncoming(cmd));
  }

  @on('destroy-incoming', true)
  destroyIncoming(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.destroyIncoming(cmd));
  }

  @on('start-migration', true)
  startMigration(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.startMigration(cmd));
  }

  @on('cancel-migration', false)
  cancelMigration(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.cancelMigration(cmd));
  }

  @on('await-convergence', false)
  awaitConvergence(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.awaitConvergence(cmd));
  }

  @on('switch-over', false)
  switchOver(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.switchOver(cmd));
  }

  @on('switch-back', true)
  switchBack(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.switchBack(cmd));
  }

  @on('verify-vm', false)
  verifyVm(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.verifyVm(cmd));
  }

  @on('destroy-vm', true)
  destroyVm(cmd: StepCommand) {
    return this.run(cmd, () => this.steps.destroySource(cmd));
  }
}
