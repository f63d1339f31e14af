import {
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  KeyReleaseResultSchema,
  ReleaseLogReplySchema,
  subjects,
  type KeyReleaseResult,
  type ReleaseRecord,
  type SignerName,
  type StepCommand,
} from '@ccm/contracts';
import { ccmFailure } from '@ccm/testing';
import { z } from 'zod';
import { stepCommand, type BrokerStack } from './broker-stack.js';

const Any = z.record(z.string(), z.unknown());

/** What the release specs send: the step command, guest commands, the release log, and two checks. */
export function releaseClient(kb: () => BrokerStack) {
  const guest = (signer: SignerName, vmId: string, verb: string, data: unknown) =>
    kb().send(signer, subjects.guestCmd(vmId, verb), data, Any);
  return {
    guest,
    releaseCmd: (sourceVmId: string, targetVmId: string, over: Partial<StepCommand> = {}) =>
      stepCommand({ step: 'release-key', context: { sourceVmId, targetVmId }, ...over }),
    release: (cmd: StepCommand, signer: SignerName = 'saga-coordinator') =>
      kb().send(signer, subjects.cmd('key-broker', 'release-migration-key'), cmd, KeyReleaseResultSchema),
    releaseLog: async (): Promise<ReleaseRecord[]> =>
      (await kb().send(GUEST_OWNER, keyBrokerSubject(KEY_BROKER_VERBS.releaseLog), {}, ReleaseLogReplySchema))
        .records,

    /** Both guests hold the same key: a sealed image stream of a container opens source → target. */
    async streamOpens(cmd: StepCommand, source: string, target: string): Promise<unknown> {
      const ref = { migrationId: cmd.migrationId, containerId: 'c1' };
      await guest('operator', source, 'run-container', { id: 'c1', pages: 16, dirtyPagesPerSec: 0 });
      const at = await guest('operator', target, 'receive', { ...ref, round: 1 });
      await guest('operator', source, 'dump', { ...ref, round: 1, target: at });
      return guest('operator', target, 'restore', { ...ref, rounds: 1 });
    },

    /** The key sealed to `target`, as anyone on the bus saw it, given to `third`: its refusal code. */
    async thirdCannotOpen(
      spied: ReadonlyArray<{ subject: string; data: Buffer }>,
      granted: KeyReleaseResult,
      target: string,
      third: string,
    ): Promise<string> {
      const sealed = spied
        .filter((m) => m.subject === subjects.guestCmd(target, 'load-key'))
        .map(
          (m) => (JSON.parse(m.data.toString()) as { data: { sealedKey: string; migrationId: string } }).data,
        )
        .find((d) => d.migrationId === granted.migrationId);
      if (!sealed) throw new Error(`no load-key to ${target} for ${granted.migrationId} was seen`);
      return (await ccmFailure(guest('operator', third, 'load-key', { ...sealed, keyId: granted.keyId })))
        .code;
    },
  };
}
