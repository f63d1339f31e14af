import { describe, expect, it } from 'vitest';
import { CcmError } from './errors.js';
import { jsonDepthExceeds, parseSafeJson, unsafeJsonValue } from './safe-json.js';

function refusal(text: string): CcmError {
  try {
    parseSafeJson(text);
  } catch (err) {
    if (err instanceof CcmError) return err;
    throw err;
  }
  throw new Error(`accepted ${text.slice(0, 40)}`);
}

describe('parseSafeJson', () => {
  it('parses ordinary JSON, including escaped pairs that make one character', () => {
    expect(parseSafeJson('{"a":[1,"x",{"b":null}],"e":"\\ud83d\\ude00"}')).toEqual({
      a: [1, 'x', { b: null }],
      e: '😀',
    });
  });

  it.each([
    ['a NUL in a value', '{"a":"x\\u0000y"}', 'VALIDATION_FAILED', /a: contains a NUL/],
    ['a NUL in a key', '{"a\\u0000":1}', 'VALIDATION_FAILED', /key/],
    ['a lone high surrogate', '["\\ud800"]', 'VALIDATION_FAILED', /0: contains a lone UTF-16 surrogate/],
    ['a lone low surrogate', '{"s":"a\\udc00"}', 'VALIDATION_FAILED', /surrogate/],
    ['1e400', '{"n":1e400}', 'VALIDATION_FAILED', /n: number is not finite/],
    ['-1e400 deep inside', '{"a":{"b":[0,-1e400]}}', 'VALIDATION_FAILED', /a\.b\.1: number is not finite/],
    ['nesting 10,000 deep', '['.repeat(10_000) + ']'.repeat(10_000), 'MALFORMED_MESSAGE', /deeper than 64/],
    ['text that is not JSON', '{"a":', 'MALFORMED_MESSAGE', /not valid JSON/],
  ])('refuses %s, not retryable', (_what, text, code, message) => {
    const err = refusal(text);
    expect(err.code).toBe(code);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(message);
  });

  it('counts depth outside strings only, and stops at the limit', () => {
    expect(jsonDepthExceeds('{"a":"[[[[[[[[[[[[[["}', 3)).toBe(false);
    expect(jsonDepthExceeds('{"a":"\\"[[[["}', 1)).toBe(false);
    expect(jsonDepthExceeds('[[[[]]]]', 4)).toBe(false);
    expect(jsonDepthExceeds('[[[[[]]]]]', 4)).toBe(true);
  });

  it('walks a value 100,000 levels deep without recursion, and finds what is at the bottom', () => {
    let deep: unknown = [Infinity];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(unsafeJsonValue(deep)).toMatch(/^0(\.0)+: number is not finite$/);
  });
});
