import fc from 'fast-check';
import { type z } from 'zod';

/** What zod 4 keeps about a schema (`schema._zod.def`), as far as generating values needs. */
interface Def {
  type: string;
  checks?: Array<{ _zod: { def: CheckDef } }>;
  [k: string]: unknown;
}
interface CheckDef {
  check: string;
  format?: string;
  pattern?: RegExp;
  minimum?: number;
  maximum?: number;
  value?: number;
}

const defOf = (s: unknown): Def => (s as { _zod: { def: Def } })._zod.def;
const checksOf = (d: Def): CheckDef[] => [
  ...(d['check'] ? [d as unknown as CheckDef] : []),
  ...(d.checks ?? []).map((c) => c._zod.def),
];

const anyJson = fc.jsonValue({ maxDepth: 2 });

function stringArb(d: Def): fc.Arbitrary<string> {
  const checks = checksOf(d);
  const min = checks.find((c) => c.check === 'min_length')?.minimum ?? 0;
  const maxCheck = checks.find((c) => c.check === 'max_length')?.maximum;
  const max = maxCheck ?? 40;
  const format = checks.find((c) => c.check === 'string_format');
  if (format?.format === 'uuid') return fc.uuid();
  if (format?.format === 'datetime') {
    return fc
      .date({ min: new Date('2020-01-01Z'), max: new Date('2040-01-01Z'), noInvalidDate: true })
      .map((t) => t.toISOString());
  }
  if (format?.pattern) {
    // Only the schema's own length bounds: a default one can exclude every match (64 hex digits),
    // and a filter no value passes never returns.
    const fits = (s: string) => s.length >= min && s.length <= (maxCheck ?? Infinity);
    return fc.stringMatching(format.pattern).map((s) => (fits(s) ? s : s.slice(0, maxCheck)));
  }
  return fc.string({ minLength: min, maxLength: Math.min(max, min + 40) });
}

function numberArb(d: Def): fc.Arbitrary<number> {
  const checks = checksOf(d);
  const lo = checks.find((c) => c.check === 'greater_than')?.value;
  const hi = checks.find((c) => c.check === 'less_than')?.value;
  const int = checks.some((c) => c.check === 'number_format' && /int/.test(c.format ?? ''));
  const min = lo ?? (int ? -1e6 : -1e9);
  const max = hi ?? (int ? 1e9 : 1e9);
  return int
    ? fc.integer({
        min: Math.ceil(Math.max(min, Number.MIN_SAFE_INTEGER)),
        max: Math.floor(Math.min(max, Number.MAX_SAFE_INTEGER)),
      })
    : fc.double({ min, max, noNaN: true, noDefaultInfinity: true });
}

/**
 * Values shaped by a zod 4 schema, mostly valid: objects with their fields (optional ones sometimes
 * left out), strings of the right format, pattern and length, numbers in range. Whatever the
 * generator does not know becomes arbitrary JSON, so the result is always JSON.
 */
export function zodArbitrary(schema: z.ZodType, depth = 0): fc.Arbitrary<unknown> {
  const d = defOf(schema);
  if (depth > 6) return anyJson;
  const inner = (s: unknown) => zodArbitrary(s as z.ZodType, depth + 1);
  switch (d.type) {
    case 'string':
      return stringArb(d);
    case 'number':
      return numberArb(d);
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'literal':
      return fc.constantFrom(...(d['values'] as unknown[]));
    case 'enum':
      return fc.constantFrom(...Object.values(d['entries'] as Record<string, unknown>));
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nonoptional':
    case 'readonly':
    case 'catch':
      return inner(d['innerType']);
    case 'nullable':
      return fc.option(inner(d['innerType']), { nil: null });
    case 'pipe':
      return defOf(d['in']).type === 'transform' ? inner(d['out']) : inner(d['in']);
    case 'lazy':
      return inner((d['getter'] as () => unknown)());
    case 'array': {
      const checks = checksOf(d);
      const minLength = checks.find((c) => c.check === 'min_length')?.minimum ?? 0;
      const maxLength = Math.min(checks.find((c) => c.check === 'max_length')?.maximum ?? 4, minLength + 4);
      return fc.array(inner(d['element']), { minLength, maxLength });
    }
    case 'tuple':
      return fc.tuple(...(d['items'] as unknown[]).map(inner));
    case 'union':
      return fc.oneof(...(d['options'] as unknown[]).map(inner));
    case 'record':
      return fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), inner(d['valueType']), { maxKeys: 3 });
    case 'object': {
      const shape = d['shape'] as Record<string, unknown>;
      const required: Record<string, fc.Arbitrary<unknown>> = {};
      const optional: string[] = [];
      for (const [k, s] of Object.entries(shape)) {
        required[k] = inner(s);
        if (['optional', 'default', 'prefault'].includes(defOf(s).type)) optional.push(k);
      }
      return fc.record(required, { requiredKeys: Object.keys(shape).filter((k) => !optional.includes(k)) });
    }
    default:
      return anyJson;
  }
}

/**
 * Mutations of a (mostly valid) payload: a field with the wrong type, a field missing, a field too
 * many, a string far too long or full of control characters and lone surrogates, a huge number.
 */
export function mutatedPayload(schema: z.ZodType): fc.Arbitrary<unknown> {
  const wrong = fc.oneof(
    fc.constant(null),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }), // JSON has no Infinity: a signed envelope cannot carry it
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.constant('x'.repeat(100_000)),
    fc.constant(Number.MAX_VALUE),
    fc.constant(-0),
    fc.constant([]),
    fc.constant({}),
    fc.boolean(),
  );
  return fc
    .tuple(zodArbitrary(schema), fc.nat(), wrong, fc.constantFrom('replace', 'drop', 'extra', 'whole'))
    .map(([base, i, value, how]) => {
      if (how === 'whole' || !base || typeof base !== 'object' || Array.isArray(base)) return value;
      const obj = { ...(base as Record<string, unknown>) };
      const keys = Object.keys(obj);
      const key = keys.length ? keys[i % keys.length] : 'k';
      if (how === 'drop') delete obj[key];
      else if (how === 'extra') obj[`extra${i % 7}`] = value;
      else obj[key] = value;
      return obj;
    });
}
