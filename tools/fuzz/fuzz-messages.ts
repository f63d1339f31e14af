import { randomUUID } from 'node:crypto';
import { type Identity } from '@ccm/keys';
import fc from 'fast-check';
import { type z } from 'zod';
import { bytesOf, sealed } from '@ccm/testing';
import { mutatedPayload, zodArbitrary } from './zod-arbitrary.js';

/** What is done to a well-formed signed envelope before it is sent. */
export const ENVELOPE_MUTATIONS = [
  'none',
  'bad-signature',
  'wrong-subject',
  'wrong-type',
  'dated-2001',
  'dated-2099',
  'unsigned',
  'unknown-signer',
  'claims-another-source',
  'no-idempotency-key',
] as const;
/** What is done to its JSON text. */
export const TEXT_MUTATIONS = [
  'none',
  'nul',
  'lone-surrogate',
  '1e400',
  'deep',
  'truncated',
  'not-utf8',
] as const;

export interface FuzzCase {
  payload: unknown;
  envelope: (typeof ENVELOPE_MUTATIONS)[number];
  text: (typeof TEXT_MUTATIONS)[number];
  /** Where a text mutation goes: a field of the envelope or of its `data` (when that is an object). */
  at: 'envelope' | 'data';
  depth: number;
}

/** A string that once got INTERNAL as a list cursor: a number too large for any integer type. */
export const FORTY_DIGIT_CURSOR = `c${'9'.repeat(40)}`;

/**
 * Issue 8's inputs that once got INTERNAL, for one subject, on a valid payload from its schema: every
 * text mutation in its data (NUL, lone surrogate, 1e400, nesting 10,000 and 100,000 deep, truncated,
 * not UTF-8), nesting 10,000 deep beside the envelope's fields, and each top-level field of the payload set to a 40-digit cursor and to
 * a string with a NUL and a lone surrogate.
 */
export function knownBadInputs(schema: z.ZodType, seed: number): FuzzCase[] {
  const [valid] = fc.sample(zodArbitrary(schema), { numRuns: 1, seed });
  const base = { payload: valid, envelope: 'none' as const, depth: 10_000 };
  const out: FuzzCase[] = [];
  for (const text of TEXT_MUTATIONS.filter((t) => t !== 'none')) out.push({ ...base, text, at: 'data' });
  out.push({ ...base, text: 'deep', at: 'envelope' }, { ...base, text: 'deep', at: 'data', depth: 100_000 });
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  const keys = shape ? Object.keys(shape) : [];
  for (const key of keys) {
    for (const value of [FORTY_DIGIT_CURSOR, 'a\u0000b\ud800c']) {
      const payload = { ...(valid as Record<string, unknown>), [key]: value };
      out.push({ ...base, payload, text: 'none', at: 'data' });
    }
  }
  return out;
}

/** Payloads from the handler's own schema (valid, mutated, or any JSON) and the mutations to apply. */
export function fuzzCases(schema: z.ZodType): fc.Arbitrary<FuzzCase> {
  return fc.record({
    payload: fc.oneof(
      { arbitrary: zodArbitrary(schema), weight: 3 },
      { arbitrary: mutatedPayload(schema), weight: 3 },
      { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 1 },
    ),
    envelope: fc.oneof(
      { arbitrary: fc.constant('none' as const), weight: 4 },
      { arbitrary: fc.constantFrom(...ENVELOPE_MUTATIONS), weight: 3 },
    ),
    text: fc.oneof(
      { arbitrary: fc.constant('none' as const), weight: 4 },
      { arbitrary: fc.constantFrom(...TEXT_MUTATIONS), weight: 2 },
    ),
    at: fc.constantFrom('envelope' as const, 'data' as const),
    depth: fc.integer({ min: 65, max: 20_000 }),
  });
}

/** The message a fuzz case becomes, and whether every receiver must refuse it before its handler. */
export function buildFuzzMessage(
  c: FuzzCase,
  identity: Identity,
  subject: string,
  opts: {
    typeChecked: boolean;
    /** Events may be relayed late from an outbox: an old time is no refusal on CCM_EVENTS. */
    lateAccepted?: boolean;
  },
): { bytes: Buffer; msgId: string; refused: boolean } {
  const over = {
    idempotencykey: c.envelope === 'no-idempotency-key' ? undefined : randomUUID(),
    ...(c.envelope === 'wrong-subject' ? { natssubject: `${subject}-elsewhere` } : {}),
    ...(c.envelope === 'wrong-type' ? { type: 'ccm.cmd.key-broker.ping.elsewhere' } : {}),
    ...(c.envelope === 'dated-2001' ? { time: new Date('2001-01-01Z') } : {}),
    ...(c.envelope === 'dated-2099' ? { time: new Date('2099-01-01Z') } : {}),
  };
  let env: Record<string, unknown> = { ...sealed(identity, subject, c.payload, over) };
  const sig = env['signature'] as string;
  if (c.envelope === 'bad-signature') env['signature'] = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
  if (c.envelope === 'unsigned') env = { ...env, signature: undefined, signerkey: undefined };
  if (c.envelope === 'unknown-signer') env['signerkey'] = 'A'.repeat(43);
  if (c.envelope === 'claims-another-source')
    env['source'] = identity.name === 'operator' ? 'key-broker' : 'operator';
  const msgId = env['id'] as string;
  const json = JSON.stringify(env);
  const inData = c.at === 'data' && json.includes('"data":{');
  const field = (v: string) =>
    inData ? json.replace('"data":{', `"data":{"zz":${v},`) : `{"zz":${v},${json.slice(1)}`;
  const text: Record<FuzzCase['text'], () => Buffer> = {
    none: () => bytesOf(json),
    nul: () => bytesOf(field('"a\\u0000b"')),
    'lone-surrogate': () => bytesOf(field('"\\ud800"')),
    '1e400': () => bytesOf(field('1e400')),
    deep: () => bytesOf(field('['.repeat(c.depth) + ']'.repeat(c.depth))),
    truncated: () => bytesOf(json.slice(0, Math.floor(json.length / 2))),
    'not-utf8': () =>
      Buffer.concat([Buffer.from(json.slice(0, 10)), Buffer.from([0xc3, 0x28]), Buffer.from(json.slice(10))]),
  };
  const envelopeRefused =
    c.envelope !== 'none' &&
    c.envelope !== 'no-idempotency-key' &&
    (c.envelope !== 'wrong-type' || opts.typeChecked) &&
    (c.envelope !== 'dated-2001' || !opts.lateAccepted);
  return { bytes: text[c.text](), msgId, refused: envelopeRefused || c.text !== 'none' };
}

/** Whether a NATS subject pattern (`*`, `>`) covers `subject`. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
