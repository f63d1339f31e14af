import { SnpCertificateError } from './errors.js';

/**
 * A minimal DER reader: just what the SNP certificate checks need (node:crypto's X509Certificate does
 * not expose extensions, validity as dates, or RSASSA-PSS parameters). Definite lengths only.
 */

/** ASN.1 tags used by the SNP certificate code. */
export const DER_TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
  /** Context-specific constructed tag `[n]` is 0xA0 + n. */
  CONTEXT_0: 0xa0,
} as const;

/** One TLV: `buf[start, end)` is the whole element, `buf[contentStart, end)` its value. */
export interface DerNode {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

function malformed(detail: string): SnpCertificateError {
  return new SnpCertificateError(`malformed DER: ${detail}`);
}

/** Reads the element starting at `offset`, which must end by `limit`. */
export function readNode(buf: Uint8Array, offset: number, limit = buf.length): DerNode {
  if (offset + 2 > limit) throw malformed(`element at ${offset} runs past ${limit}`);
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) throw malformed(`multi-byte tag at ${offset}`);
  let length = buf[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw malformed(`length form 0x${length.toString(16)} at ${offset}`);
    if (contentStart + count > limit) throw malformed(`length bytes at ${offset} run past ${limit}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[contentStart + i];
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw malformed(`element at ${offset} (length ${length}) runs past ${limit}`);
  return { tag, start: offset, contentStart, end };
}

/** Reads the element at `offset` and checks its tag. */
export function expectNode(
  buf: Uint8Array,
  offset: number,
  tag: number,
  what: string,
  limit = buf.length,
): DerNode {
  const node = readNode(buf, offset, limit);
  if (node.tag !== tag) {
    throw malformed(`${what}: tag 0x${node.tag.toString(16)} where 0x${tag.toString(16)} was expected`);
  }
  return node;
}

/** The direct children of a constructed element. */
export function childrenOf(buf: Uint8Array, node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let at = node.contentStart; at < node.end;) {
    const child = readNode(buf, at, node.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** The value bytes of an element (a view). */
export function contentOf(buf: Uint8Array, node: DerNode): Uint8Array {
  return buf.subarray(node.contentStart, node.end);
}

/** The whole encoding of an element (a view). */
export function encodingOf(buf: Uint8Array, node: DerNode): Uint8Array {
  return buf.subarray(node.start, node.end);
}

/** Dotted form of an OBJECT IDENTIFIER value. */
export function decodeOid(value: Uint8Array): string {
  if (value.length === 0) throw malformed('empty OID');
  const arcs: number[] = [];
  let acc = 0;
  for (const byte of value) {
    acc = acc * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(acc);
      acc = 0;
    }
  }
  const first = arcs[0] < 80 ? Math.floor(arcs[0] / 40) : 2;
  return [first, arcs[0] - first * 40, ...arcs.slice(1)].join('.');
}

/** A non-negative INTEGER value that fits in 48 bits (SPLs, salt lengths, versions). */
export function decodeSmallUint(value: Uint8Array, what: string): number {
  if (value.length === 0 || value.length > 7 || value[0] & 0x80)
    throw malformed(`${what}: not a small non-negative INTEGER`);
  return value.reduce((acc, b) => acc * 256 + b, 0);
}

/** An UTCTime (two-digit year, 1950–2049) or GeneralizedTime in the `...Z` form X.509 requires. */
export function decodeTime(buf: Uint8Array, node: DerNode): Date {
  const text = Buffer.from(contentOf(buf, node)).toString('latin1');
  const m =
    node.tag === DER_TAG.UTC_TIME
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
      : node.tag === DER_TAG.GENERALIZED_TIME
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
        : null;
  if (!m) throw malformed(`time "${text}" (tag 0x${node.tag.toString(16)})`);
  let year = Number(m[1]);
  if (node.tag === DER_TAG.UTC_TIME) year += year < 50 ? 2000 : 1900;
  const [, , mo, d, h, mi, s] = m.map(Number);
  return new Date(Date.UTC(year, mo - 1, d, h, mi, s));
}
