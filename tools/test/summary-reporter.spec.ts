import { describe, expect, it } from 'vitest';
import { countRun, type CountedModule } from './summary-reporter.js';

const mod = (moduleId: string, state: string, tests: string[]): CountedModule => ({
  moduleId,
  state: () => state,
  children: { allTests: () => tests.map((s) => ({ result: () => ({ state: s }) })) },
});

describe('the closing count of a test run', () => {
  it('counts passed, failed and skipped tests', () => {
    const c = countRun(
      [mod('a', 'passed', ['passed', 'passed', 'skipped']), mod('b', 'failed', ['failed'])],
      0,
    );
    expect(c).toEqual({ passed: 2, failed: 1, skipped: 1, brokenFiles: [] });
  });

  it('a file whose beforeAll threw counts as one failure although its tests read skipped', () => {
    const c = countRun(
      [mod('ok', 'passed', ['passed']), mod('setup.int-spec.ts', 'failed', ['skipped', 'skipped'])],
      0,
    );
    expect(c.failed).toBe(1);
    expect(c.skipped).toBe(2);
    expect(c.brokenFiles).toEqual(['setup.int-spec.ts']);
  });

  it('a file that failed with no tests collected counts as one failure', () => {
    expect(countRun([mod('import-error.spec.ts', 'failed', [])], 0).failed).toBe(1);
  });

  it('unhandled errors count as failures', () => {
    expect(countRun([mod('a', 'passed', ['passed'])], 2).failed).toBe(2);
  });
});
