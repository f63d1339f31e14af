/**
 * A minimal DER writer: just the universal types the lab's X.509 certificates need. Every function
 * returns the complete TLV encoding of one value.
 */

function lengthOctets(length: number): Buffer {
  if (length < 0x80) return Buffer.of(length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Tag, length and the concatenated contents. */
export function tlv(tag: number, ...contents: readonly Uint8Array[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.of(tag), lengthOctets(body.length), body]);
}

/** SEQUENCE of the given encodings. */
export const sequence = (...items: readonly Uint8Array[]): Buffer => tlv(0x30, ...items);

/** SET of the given encodings (callers pass one element, or elements already in DER order). */
export const set = (...items: readonly Uint8Array[]): Buffer => tlv(0x31, ...items);

/** A non-negative INTEGER in its minimal two's-complement form. */
export function integer(value: bigint | number): Buffer {
  let n = BigInt(value);
  if (n < 0n) throw new RangeError('negative INTEGER not supported');
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  } while (n > 0n);
  if (bytes[0] & 0x80) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
}

/** OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const out: number[] = [Number(arcs[0] * 40n + arcs[1])];
  for (const arc of arcs.slice(2)) {
    const groups: number[] = [];
    let n = arc;
    do {
      groups.unshift(Number(n & 0x7fn));
      n >>= 7n;
    } while (n > 0n);
    out.push(...groups.map((g, i) => (i < groups.length - 1 ? g | 0x80 : g)));
  }
  return tlv(0x06, Buffer.from(out));
}

/** NULL. */
export const nullValue = (): Buffer => Buffer.of(0x05, 0x00);

/** BOOLEAN (DER: TRUE is 0xFF). */
export const boolean = (value: boolean): Buffer => tlv(0x01, Buffer.of(value ? 0xff : 0x00));

/** OCTET STRING. */
export const octetString = (bytes: Uint8Array): Buffer => tlv(0x04, bytes);

/** BIT STRING with `unusedBits` padding bits in the last octet. */
export const bitString = (bytes: Uint8Array, unusedBits = 0): Buffer =>
  tlv(0x03, Buffer.of(unusedBits), bytes);

/** UTF8String. */
export const utf8String = (text: string): Buffer => tlv(0x0c, Buffer.from(text, 'utf8'));

/** IA5String (ASCII). */
export const ia5String = (text: string): Buffer => tlv(0x16, Buffer.from(text, 'latin1'));

/** Context-specific constructed tag `[n]` around `inner` (EXPLICIT tagging). */
export const explicit = (n: number, inner: Uint8Array): Buffer => tlv(0xa0 + n, inner);

/** X.509 Time: UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5). */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '');
  const year = date.getUTCFullYear();
  if (year < 2050) return tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'ascii'));
  return tlv(0x18, Buffer.from(`${digits}Z`, 'ascii'));
}
