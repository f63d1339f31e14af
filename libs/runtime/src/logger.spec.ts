import { afterEach, describe, expect, it, vi } from 'vitest';
import { jsonLogger } from './service.js';

/** The JSON lines a logger call printed on stdout. */
function printed(fn: () => void): Array<Record<string, unknown>> {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    fn();
  } finally {
    spy.mockRestore();
  }
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('service JSON logs', () => {
  afterEach(() => vi.restoreAllMocks());

  it('puts a record’s fields at the top level with message a string', () => {
    const [line] = printed(() => jsonLogger('key-broker', 'log').log({ message: 'ready', httpPort: 8080 }));
    expect(line).toMatchObject({ level: 'log', message: 'ready', httpPort: 8080, context: 'key-broker' });
    expect(typeof line['timestamp']).toBe('number');
  });

  it('keeps its own fields when a record names them too', () => {
    const [line] = printed(() =>
      jsonLogger('key-broker', 'log').warn({ message: 'draining', level: 'fake', pid: -1 }),
    );
    expect(line).toMatchObject({ level: 'warn', message: 'draining', pid: process.pid });
  });

  it('prints a plain message, and an object without a text message as it is', () => {
    const logger = jsonLogger('key-broker', 'log');
    const lines = printed(() => {
      logger.log('plain');
      logger.log({ count: 3 });
    });
    expect(lines[0]).toMatchObject({ message: 'plain' });
    expect(lines[1]).toMatchObject({ message: { count: 3 } });
  });

  it('prints nothing below its level', () => {
    expect(printed(() => jsonLogger('key-broker', 'warn').log('quiet'))).toEqual([]);
  });
});
