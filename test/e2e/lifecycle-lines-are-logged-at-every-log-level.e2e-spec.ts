import { startServiceProcess, startTestStack, type TestStack } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('a service logging only errors', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('still writes its ready, draining and stopped lines (regression: the launcher waited forever at warn)', async () => {
    const p = await startServiceProcess('key-broker', stack.env({ CCM_LOG_LEVEL: 'error' }));
    expect(p.httpPort).toBeGreaterThan(0);
    expect(await p.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const messages = p.lines.map((l) => (typeof l === 'string' ? l : String(l['message'])));
    expect(messages).toEqual(expect.arrayContaining(['ready', 'draining', 'stopped']));
    expect(messages).not.toContain('Nest application successfully started');
  });
});
