import { HOST_COMMAND_ROLE, MIGRATION_PHASES, stepCommandContract } from '@ccm/contracts';
import { CONTAINER_MIGRATION, Participant, SagaPhase, VM_MIGRATION, createSagaMachine } from '@ccm/saga';
import { describe, expect, it } from 'vitest';
import { LocalVerb, VERIFY_DELEGATE } from './dispatcher.js';
import { buildCommand, stepContext, subjectFor } from './step-commands.js';
import { type SagaRow } from './store.js';

const row: SagaRow = {
  id: 'mig-1',
  saga: 'vm-migration@1',
  kind: 'vm',
  workloadId: 'vm-7',
  sourceHost: 'src',
  targetHost: 'dst',
  state: null,
  eventSeq: 0,
  admitted: true,
  mine: true,
};

const commands = [CONTAINER_MIGRATION, VM_MIGRATION].flatMap((def) =>
  def.steps.flatMap((s) =>
    [s.action, ...(s.compensation ? [s.compensation] : [])].map((c) => ({ def, step: s.name, ...c })),
  ),
);

describe('step commands', () => {
  it.each(commands.filter((c) => c.participant !== Participant.Coordinator))(
    '$def.name $step: $participant $command has a contract',
    ({ participant, command }) => {
      expect(stepCommandContract(participant, command)).toBeDefined();
    },
  );

  it.each(commands.filter((c) => c.participant === Participant.Coordinator))(
    '$def.name $step: the coordinator carries out $command itself',
    ({ command }) => {
      expect(Object.values(LocalVerb)).toContain(command);
    },
  );

  it.each(Object.entries(VERIFY_DELEGATE))(
    'delegates verify of a %s to a command with a contract',
    (_, d) => {
      expect(stepCommandContract(d.participant, d.verb)).toBeDefined();
    },
  );

  it.each(commands.filter((c) => c.participant === Participant.HostAgent))(
    '$def.name $step: host-agent $command goes to the $command host',
    ({ command }) => {
      const role = HOST_COMMAND_ROLE[command as keyof typeof HOST_COMMAND_ROLE];
      expect(subjectFor(row, 'host-agent', command)).toBe(
        `ccm.cmd.host.${role === 'source' ? 'src' : 'dst'}.step.${command}`,
      );
    },
  );

  it('names every saga phase in the contracts', () => {
    for (const phase of Object.values(SagaPhase)) expect(MIGRATION_PHASES).toContain(phase);
  });

  it('carries context from earlier replies and refuses a command that lacks what it needs', () => {
    const m = createSagaMachine(VM_MIGRATION);
    let s = m.advance(m.create('mig-1', 0), { type: 'Started' }, 0).state;
    for (const [step, result] of [
      ['admit', { vmSpec: { memoryMiB: 32, cpus: 1 } }],
      ['attest-target', {}],
      ['transport-session', { transportSessionId: 'ts-1', secret: 'ignored' }],
    ] as const) {
      s = m.advance(s, { type: 'StepSucceeded', step, attempt: 1, result }, 1).state;
    }
    expect(stepContext(s)).toEqual({ transportSessionId: 'ts-1', vmSpec: { memoryMiB: 32, cpus: 1 } });
    const send = {
      type: 'SendAction' as const,
      step: 'start-migration',
      participant: Participant.HostAgent,
      command: 'start-migration',
      attempt: 1,
      idempotencyKey: 'mig-1:start-migration:1',
      timeoutMs: 1,
      deadlineAt: 2,
    };
    expect(() => buildCommand(row, s, send)).toThrow(/context.targetVmId/);
    expect(() => buildCommand(row, s, send)).toThrow(/context.incomingUri/);
    const prepare = buildCommand(row, s, { ...send, step: 'prepare-incoming', command: 'prepare-incoming' });
    expect(prepare).toMatchObject({
      subject: 'ccm.cmd.host.dst.step.prepare-incoming',
      payload: {
        migrationId: 'mig-1',
        kind: 'action',
        workload: { id: 'vm-7', kind: 'vm' },
        context: { vmSpec: { memoryMiB: 32 } },
      },
    });
  });
});
