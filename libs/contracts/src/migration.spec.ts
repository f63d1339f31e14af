import { describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.js';
import {
  CancelRequestSchema,
  MigrateRequestSchema,
  isFinalMigrationPhase,
  migrationIdFor,
} from './migration.js';
import {
  MIGRATION_EVENTS,
  migrationEventName,
  migrationEventSubject,
  progressSubjects,
} from './migration-events.js';
import { ListMigrationsRequestSchema } from './migration-queries.js';
import { HOST_COMMAND_ROLE } from './host-steps.js';
import { STEP_COMMANDS, stepCommandContract, stepFailureEffect } from './migration-steps.js';

const command = {
  migrationId: 'mig-1',
  saga: 'container-migration@1',
  step: 'pre-copy',
  kind: 'action',
  attempt: 1,
  workload: { id: 'web-1', kind: 'container' },
  sourceHost: 'host-a',
  targetHost: 'host-b',
  context: {},
};

describe('migrate request', () => {
  it('fills kind and priority defaults', () => {
    expect(MigrateRequestSchema.parse({ workload: 'w1', sourceHost: 'a', targetHost: 'b' })).toEqual({
      workload: 'w1',
      kind: 'container',
      sourceHost: 'a',
      targetHost: 'b',
      priority: 'user',
    });
  });

  it.each([
    [{ workload: 'w1', sourceHost: 'a', targetHost: 'a' }, 'targetHost: must differ from sourceHost'],
    [{ workload: 'w.1', sourceHost: 'a', targetHost: 'b' }, 'workload'],
    [{ workload: 'w1', sourceHost: 'a', targetHost: 'b', priority: 'urgent' }, 'priority'],
    [{ workload: 'w1', sourceHost: 'a', targetHost: 'b', extra: 1 }, 'extra'],
    [{ workload: 'w1', sourceHost: 'a', targetHost: 'b', allowPostcopy: true }, 'allowPostcopy'],
  ])('refuses %j', (input, where) => {
    const r = MigrateRequestSchema.safeParse(input);
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain(where.split(':')[0]);
  });

  it('cancel needs a migration id', () => {
    expect(CancelRequestSchema.safeParse({}).success).toBe(false);
    expect(CancelRequestSchema.parse({ migrationId: 'mig-1', reason: 'no' })).toEqual({
      migrationId: 'mig-1',
      reason: 'no',
    });
  });
});

describe('migration ids', () => {
  it('are a stable subject token derived from the idempotency key', () => {
    const id = migrationIdFor('key-1');
    expect(id).toMatch(/^mig-[0-9a-f]{24}$/);
    expect(migrationIdFor('key-1')).toBe(id);
    expect(migrationIdFor('key-2')).not.toBe(id);
  });

  it('knows the final phases', () => {
    expect(isFinalMigrationPhase('Rejected')).toBe(true);
    expect(isFinalMigrationPhase('Running')).toBe(false);
  });
});

describe('step commands', () => {
  it('every host-agent verb names the host it goes to', () => {
    expect(Object.keys(HOST_COMMAND_ROLE).sort()).toEqual(Object.keys(STEP_COMMANDS['host-agent']).sort());
  });

  it('refuses a command that lacks the context it needs, and accepts it otherwise', () => {
    const preCopy = stepCommandContract('container-checkpoint', 'pre-copy')!;
    expect(preCopy.request.safeParse(command).success).toBe(false);
    expect(preCopy.request.safeParse({ ...command, context: { targetVmId: 'vm-9' } }).success).toBe(true);
    expect(stepCommandContract('container-checkpoint', 'nope')).toBeUndefined();
  });

  it.each([
    [{ code: ErrorCodes.ValidationFailed }, 'none'],
    [{ code: ErrorCodes.Internal }, 'maybe'],
    [{ code: ErrorCodes.Internal, effect: 'none' as const }, 'none'],
    [{ code: ErrorCodes.Unauthorized, effect: 'maybe' as const }, 'maybe'],
    // the typed field decides; an `effect` left in the details bag is no statement
    [{ code: ErrorCodes.Internal, details: { effect: 'none' } }, 'maybe'],
  ])('the effect of a failure %j is %s', (e, effect) => {
    expect(stepFailureEffect({ retryable: false, message: 'm', ...e })).toBe(effect);
  });
});

describe('migration events', () => {
  it('builds and parses subjects', () => {
    const s = migrationEventSubject('mig-1', 'step-succeeded');
    expect(s).toBe('ccm.evt.migration.mig-1.step-succeeded');
    expect(migrationEventName(s)).toBe('step-succeeded');
    expect(migrationEventName('ccm.evt.vm.mig-1.step-succeeded')).toBeUndefined();
    expect(progressSubjects.transfer('mig-1')).toBe('ccm.evt.transfer.mig-1.progressed');
  });

  it('validates event data', () => {
    const at = new Date().toISOString();
    expect(
      MIGRATION_EVENTS['cancel-refused'].safeParse({
        migrationId: 'mig-1',
        seq: 3,
        at,
        reason: 'PastPointOfNoReturn',
        message: 'too late',
      }).success,
    ).toBe(true);
    expect(
      MIGRATION_EVENTS.admitted.safeParse({ migrationId: 'mig-1', seq: 0, at, waitedMs: 1 }).success,
    ).toBe(false);
  });
});

describe('list query', () => {
  it('coerces HTTP strings and applies the default page size', () => {
    expect(ListMigrationsRequestSchema.parse({ limit: '20', host: 'host-a' })).toEqual({
      limit: 20,
      host: 'host-a',
    });
    expect(ListMigrationsRequestSchema.parse({})).toEqual({ limit: 50 });
  });

  it.each([{ limit: '0' }, { limit: 'ten' }, { phase: 'Dancing' }, { cursor: 'x' }, { colour: 'red' }])(
    'refuses %j',
    (q) => expect(ListMigrationsRequestSchema.safeParse(q).success).toBe(false),
  );
});
