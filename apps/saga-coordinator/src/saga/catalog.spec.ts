import { CONTAINER_MIGRATION, VM_MIGRATION, sagaId } from '@ccm/saga';
import { describe, expect, it } from 'vitest';
import { SagaCatalog, scaleDefinition } from './catalog.js';

describe('the saga catalog', () => {
  it('keeps the definitions as written at scale 1', () => {
    expect(scaleDefinition(CONTAINER_MIGRATION, { factor: 1, minTimeoutMs: 5_000 })).toBe(
      CONTAINER_MIGRATION,
    );
  });

  it('scales every timeout and retry delay, with a floor under timeouts', () => {
    const fast = scaleDefinition(CONTAINER_MIGRATION, { factor: 0.01, minTimeoutMs: 500 });
    const preCopy = fast.steps.find((s) => s.name === 'pre-copy')!;
    expect(preCopy.action.timeoutMs).toBe(18_000);
    expect(fast.steps.find((s) => s.name === 'admit')!.action.timeoutMs).toBe(500);
    expect(preCopy.action.retry).toMatchObject({ baseDelayMs: 20, maxDelayMs: 100, maxAttempts: 2 });
    expect(preCopy.compensation!.timeoutMs).toBe(600);
    expect(sagaId(fast)).toBe(sagaId(CONTAINER_MIGRATION));
  });

  it('finds the machine by workload kind and by state row', () => {
    const c = new SagaCatalog({ factor: 1, minTimeoutMs: 1 });
    expect(c.forKind('vm').definition).toBe(VM_MIGRATION);
    expect(c.forSaga(sagaId(CONTAINER_MIGRATION)).definition).toBe(CONTAINER_MIGRATION);
    expect(() => c.forSaga('container-migration@99')).toThrow(/no saga definition container-migration@99/);
  });
});
