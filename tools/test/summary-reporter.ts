import type { Reporter, TestModule } from 'vitest/node';

/** The parts of a Vitest test module the count reads. */
export interface CountedModule {
  moduleId: string;
  state(): string;
  children: { allTests(): Iterable<{ result(): { state: string } }> };
}

export interface RunCount {
  passed: number;
  failed: number;
  skipped: number;
  /** Files that failed outside any test (a beforeAll that threw, an import error): each counts as one failure. */
  brokenFiles: string[];
}

/**
 * Counts a run. A file whose setup throws leaves its tests "skipped" while the run fails; it counts as a
 * failure here, so the closing line never reads "0 failed" for a red run. Unhandled errors count too.
 */
export function countRun(modules: ReadonlyArray<CountedModule>, unhandledErrors: number): RunCount {
  const count: RunCount = { passed: 0, failed: unhandledErrors, skipped: 0, brokenFiles: [] };
  for (const mod of modules) {
    let failedHere = 0;
    for (const test of mod.children.allTests()) {
      const state = test.result().state;
      if (state === 'passed') count.passed++;
      else if (state === 'failed') failedHere++;
      else count.skipped++;
    }
    if (mod.state() === 'failed' && failedHere === 0) {
      failedHere = 1;
      count.brokenFiles.push(mod.moduleId);
    }
    count.failed += failedHere;
  }
  return count;
}

/**
 * Prints one plain closing line, `tests: N passed, N failed, N skipped`, after the default reporter, so
 * CI and people read the same count whatever runner output precedes it.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    const c = countRun(testModules, unhandledErrors.length);
    for (const file of c.brokenFiles) process.stdout.write(`\nfailed outside any test: ${file}`);
    if (unhandledErrors.length) process.stdout.write(`\nunhandled errors: ${unhandledErrors.length}`);
    process.stdout.write(`\ntests: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped\n`);
  }
}
