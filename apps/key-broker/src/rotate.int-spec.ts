import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCodes,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  LaunchSessionReplySchema,
  PutPolicyReplySchema,
  STEP_COMMANDS,
  subjects,
  TransportSessionReplySchema,
  type StepCommand,
} from '@ccm/contracts';
import { ccmFailure, pollUntil } from '@ccm/testing';
import { z } from 'zod';
import { startBrokerStack, stepCommand, type BrokerStack } from './__fixtures__/broker-stack.js';
import { labPin, policy } from './__fixtures__/platforms.js';

const kbSteps = STEP_COMMANDS['key-broker'];
const RotationSchema = z.object({
  migrationId: z.string(),
  transportSessionClosed: z.string().optional(),
  sourceLaunchSessionsRevoked: z.array(z.string()),
});

/**
 * `rotate-keys` after a VM migration's point of no return: the transport session closes and the source
 * placement's launch secrets are revoked for good; only the coordinator may ask, only for a migration
 * whose target this broker granted, and a repeat answers what the first rotation did.
 */
describe('key-broker: rotate-keys revokes the move’s transport session and the source placement', () => {
  let kb: BrokerStack;
  const sessionOn = (vmId: string) =>
    kb.send(
      'vm-lifecycle',
      keyBrokerSubject(KEY_BROKER_VERBS.launchSession),
      { vmId, hostId: 'host-a', workloadId: vmId },
      LaunchSessionReplySchema,
    );
  const step = (cmd: StepCommand, verb: keyof typeof kbSteps, key?: string) =>
    kb.send('saga-coordinator', subjects.cmd('key-broker', verb), cmd, kbSteps[verb].reply, key);

  beforeAll(async () => {
    kb = await startBrokerStack(['host-a', 'host-b']);
    await kb.send(
      'guest-owner',
      keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
      {
        policy: {
          ...policy(),
          workloadClass: 'vms',
          environment: 'lab',
          workloads: ['vm-moved', 'vm-bystander'],
          trustedRoots: {
            amd: [],
            lab: [{ name: 'lab', generation: 'milan', arkBodySha256: labPin(kb.lab) }],
          },
          sev: { minFirmware: { apiMajor: 0, apiMinor: 0 }, guestPolicy: 0x1, launchDigests: [] },
        },
        expectedVersion: 0,
      },
      PutPolicyReplySchema,
    );
  }, 120_000);
  afterAll(async () => {
    await kb?.close();
  });

  it('closes the transport session, revokes the source launch session, and answers a retry the same', async () => {
    const launched = await sessionOn('vm-moved');
    const bystander = await sessionOn('vm-bystander');
    const base = stepCommand({
      saga: 'vm-migration@1',
      workload: { id: 'vm-moved', kind: 'vm' },
      sourceHost: 'host-a',
      targetHost: 'host-b',
    });
    await step({ ...base, step: 'attest-target' }, 'attest-platform');
    const ts = TransportSessionReplySchema.parse(
      await step({ ...base, step: 'transport-session' }, 'open-transport-session'),
    );
    const rotated = RotationSchema.parse(await step({ ...base, step: 'rotate' }, 'rotate-keys'));
    expect(rotated).toEqual({
      migrationId: base.migrationId,
      transportSessionClosed: ts.transportSessionId,
      sourceLaunchSessionsRevoked: [launched.launchSessionId],
    });
    // a retry under a new attempt (and idempotency key) answers what the first rotation did
    expect(await step({ ...base, step: 'rotate', attempt: 2 }, 'rotate-keys')).toEqual(rotated);
    // the revoked placement gets nothing again; another VM's launch is untouched
    const err = await ccmFailure(sessionOn('vm-moved'));
    expect(err).toMatchObject({ code: KeyBrokerErrorCodes.AttestationRefused });
    expect(err.message).toMatch(/revoked after the VM migrated away/);
    expect((await sessionOn('vm-bystander')).launchSessionId).toBe(bystander.launchSessionId);
    // the transport session is closed: the saga cannot reopen it for this migration
    const reopen = await ccmFailure(
      step({ ...base, step: 'transport-session', attempt: 2 }, 'open-transport-session'),
    );
    expect(reopen.message).toMatch(/was closed/);
    await pollUntil('the key.rotated event', () =>
      kb.events.some((e) => e.subject === `ccm.evt.key.${base.migrationId}.rotated`),
    );
  });

  it('a compromised coordinator cannot revoke a placement by naming a migration the broker never granted', async () => {
    const bystander = await sessionOn('vm-bystander');
    const forged = stepCommand({
      saga: 'vm-migration@1',
      step: 'rotate',
      workload: { id: 'vm-bystander', kind: 'vm' },
      sourceHost: 'host-a',
      targetHost: 'host-b',
    });
    const err = await ccmFailure(step(forged, 'rotate-keys'));
    expect(err).toMatchObject({ code: ErrorCodes.Conflict, retryable: false, effect: 'none' });
    expect((await sessionOn('vm-bystander')).launchSessionId).toBe(bystander.launchSessionId);
  });

  it.each(['operator', 'vm-lifecycle', 'guest-owner'] as const)(
    'rotate-keys signed by %s is UNAUTHORIZED',
    async (signer) => {
      const cmd = stepCommand({ step: 'rotate', workload: { id: 'vm-bystander', kind: 'vm' } });
      const err = await ccmFailure(
        kb.send(signer, subjects.cmd('key-broker', 'rotate-keys'), cmd, z.unknown()),
      );
      expect(err.code).toBe(ErrorCodes.Unauthorized);
    },
  );
});
