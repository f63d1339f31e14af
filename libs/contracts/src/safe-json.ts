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
  // Paths are built only for the value reported: each frame points at its parent.
  interface Frame {
    v: unknown;
    key?: string;
    up?: Frame;
  }
  const pathOf = (f: Frame): string => {
    const keys: string[] = [];
    for (let x: Frame | undefined = f; x?.key !== undefined; x = x.up) keys.push(x.key);
    return keys.reverse().join('.') || '(root)';
  };
  const stack: Frame[] = [{ v: value }];
  while (stack.length) {
    const f = stack.pop()!;
    const v = f.v;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return `${pathOf(f)}: contains a NUL character`;
      if (LONE_SURROGATE.test(v)) return `${pathOf(f)}: contains a lone UTF-16 surrogate`;
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return `${pathOf(f)}: number is not finite`;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push({ v: v[i], key: String(i), up: f });
    } else if (v && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (!cleanText(k)) return `${pathOf(f)}: a key is not clean Unicode text`;
        stack.push({ v: item, key: k, up: f });
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
