import { z } from 'zod';
import { QmpMalformedReplyError } from './errors.js';

/**
 * The QMP wire format (QEMU docs/interop/qmp-spec): one JSON object per line, of four kinds.
 * Nothing QEMU sends is trusted: every line is parsed and checked against these schemas.
 */

const qemuVersionSchema = z.object({
  qemu: z.object({ major: z.number().int(), minor: z.number().int(), micro: z.number().int() }),
  package: z.string(),
});

export const greetingSchema = z.object({
  QMP: z.looseObject({ version: qemuVersionSchema, capabilities: z.array(z.string()) }),
});
export type QmpGreeting = z.infer<typeof greetingSchema>['QMP'];

const timestampSchema = z.object({ seconds: z.number().int(), microseconds: z.number().int() });

export const eventEnvelopeSchema = z.object({
  event: z.string().min(1),
  data: z.record(z.string(), z.unknown()).optional(),
  timestamp: timestampSchema,
});

const idSchema = z.unknown();
const successSchema = z.object({ return: z.unknown(), id: idSchema.optional() });
const errorSchema = z.object({
  error: z.looseObject({ class: z.string(), desc: z.string() }),
  id: idSchema.optional(),
});

export type WireMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | {
      kind: 'event';
      event: string;
      data: Record<string, unknown>;
      timestamp: { seconds: number; microseconds: number };
    }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; errorClass: string; desc: string };

export const EXCERPT_CHARS = 500;
export const excerpt = (s: string): string =>
  s.length > EXCERPT_CHARS ? `${s.slice(0, EXCERPT_CHARS)}…` : s;

/** Classifies one line from QEMU; a line that fits no kind yields a {@link QmpMalformedReplyError}. */
export function parseWireMessage(line: string): WireMessage | QmpMalformedReplyError {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    return new QmpMalformedReplyError('bad-json', (err as Error).message, excerpt(line));
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return new QmpMalformedReplyError('bad-json', 'a QMP message must be a JSON object', excerpt(line));
  }
  const bad = (what: string, issues: z.ZodError): QmpMalformedReplyError =>
    new QmpMalformedReplyError('bad-shape', `${what}: ${z.prettifyError(issues)}`, excerpt(line));

  if ('QMP' in raw) {
    const g = greetingSchema.safeParse(raw);
    return g.success ? { kind: 'greeting', greeting: g.data.QMP } : bad('greeting', g.error);
  }
  if ('event' in raw) {
    const e = eventEnvelopeSchema.safeParse(raw);
    if (!e.success) return bad('event', e.error);
    return { kind: 'event', event: e.data.event, data: e.data.data ?? {}, timestamp: e.data.timestamp };
  }
  if ('error' in raw) {
    const r = errorSchema.safeParse(raw);
    if (!r.success) return bad('error reply', r.error);
    return { kind: 'error', id: r.data.id, errorClass: r.data.error.class, desc: r.data.error.desc };
  }
  if ('return' in raw) {
    const r = successSchema.parse(raw);
    return { kind: 'return', id: r.id, value: r.return };
  }
  return new QmpMalformedReplyError(
    'no-return-or-error',
    'message has none of QMP, event, return, error',
    excerpt(line),
  );
}

/**
 * Splits a byte stream into lines. QEMU ends each message with CRLF; partial lines are kept until the
 * rest arrives. A line longer than `maxLineBytes` is a protocol error (guards memory against a peer
 * that never sends a newline).
 */
export class LineSplitter {
  private buf = '';
  constructor(private readonly maxLineBytes = 16 * 1024 * 1024) {}

  push(chunk: string): { lines: string[]; overflow: boolean } {
    this.buf += chunk;
    const lines: string[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) lines.push(line);
    }
    return { lines, overflow: this.buf.length > this.maxLineBytes };
  }

  get pending(): string {
    return this.buf;
  }
}
