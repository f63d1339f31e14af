import { CcmError, ErrorCodes } from './errors.js';

/** Deepest nesting of arrays and objects a CCM message may have (an envelope's data sits at depth 2). */
export const MAX_JSON_DEPTH = 64;

/** What {@link parseSafeJson} refuses, with the stable code the refusal carries. */
export interface SafeJsonLimits {
  maxDepth?: number;
}

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const cleanText = (s: string) => !s.includes('\u0000') && !LONE_SURROGATE.test(s);

const refuse = (code: string, message: string, details?: Record<string, unknown>) =>
  new CcmError(code, message, { retryable: false, ...(details ? { details } : {}) });

/**
 * The nesting depth of JSON text, scanned without parsing (strings skipped), stopping as soon as it
 * passes `limit`: a 10,000-deep array is refused in one linear pass before `JSON.parse` or any
 * recursive code sees it.
 */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > limit) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return false;
}

/**
 * The first value in `value` that no CCM message may carry, as `path: problem`: a string with NUL
 * (Postgres cannot store it, C tools truncate at it) or a lone UTF-16 surrogate (not Unicode text), or
 * a number that is not finite (`1e400` parses to Infinity, which JSON cannot say back). Iterative, so
 * it cannot overflow the stack whatever the input.
 */
export function unsafeJsonValue(value: unknown): string | undefined {
  const stack: Array<[unknown, string]> = [[value, '(root)']];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return `${path}: contains a NUL character`;
      if (LONE_SURROGATE.test(v)) return `${path}: contains a lone UTF-16 surrogate`;
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return `${path}: number is not finite`;
    } else if (Array.isArray(v)) {
      v.forEach((item, i) => stack.push([item, `${path}.${i}`]));
    } else if (v && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (!cleanText(k)) return `${path}: a key is not clean Unicode text`;
        stack.push([item, path === '(root)' ? k : `${path}.${k}`]);
      }
    }
  }
  return undefined;
}

/**
 * `JSON.parse` for untrusted messages: refuses nesting deeper than `maxDepth` before parsing
 * (MALFORMED_MESSAGE), text that is not JSON (MALFORMED_MESSAGE), and values with NUL, lone
 * surrogates or non-finite numbers (VALIDATION_FAILED); never retryable, never a stack overflow.
 */
export function parseSafeJson(text: string, limits: SafeJsonLimits = {}): unknown {
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  if (jsonDepthExceeds(text, maxDepth)) {
    throw refuse(ErrorCodes.MalformedMessage, `message nests deeper than ${maxDepth} levels`, { maxDepth });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw refuse(ErrorCodes.MalformedMessage, 'message is not valid JSON');
  }
  const problem = unsafeJsonValue(value);
  if (problem)
    throw refuse(ErrorCodes.ValidationFailed, `message is invalid: ${problem}`, { problems: [problem] });
  return value;
}
