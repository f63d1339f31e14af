import type { SevTransportKeys } from '@ccm/sev';
import { MAX_GUEST_MEMORY_BYTES } from '../firmware.js';
import { field } from '../store/state-files.js';
import { SEV_GUEST_STATE, type SevGuestStateName } from '../status.js';
import type { GuestContext, TransportState } from './context.js';
import { BLOCKS_PER_PAGE, type GuestPageImage, PAGE_SIZE } from './memory.js';
import { MemoryEncryptionKey, VEK_SIZE } from './memory-cipher.js';

/**
 * The plaintext of a sealed guest context (what `exportGuest` encrypts):
 *
 *   u32 LE metaLength ‖ meta (UTF-8 JSON, {@link ContextMeta}) ‖ u32 LE pageCount ‖
 *   pageCount × (u32 LE page index ‖ 256 block flags (0 shared, 1 private) ‖ 4096 bytes)
 *
 * Page bytes are the firmware's own view: plaintext for private blocks, the host's bytes for shared
 * ones. Only pages ever written are listed (guest memory is sparse). The whole body is only read after
 * the seal verified, so its checks catch this firmware's own mistakes rather than an attacker.
 */

/** Bytes of one page record. */
const PAGE_RECORD_SIZE = 4 + BLOCKS_PER_PAGE + PAGE_SIZE;

/** Transport state as stored: keys and replay state (IVs as hex). */
interface TransportMeta {
  readonly tek: string;
  readonly tik: string;
  readonly packets: number;
  readonly seenIvs: readonly string[];
}

/** The context's fields besides memory. Binary values are hex, VMSAs base64. */
interface ContextMeta {
  readonly handle: number;
  readonly kind: 'sev' | 'sev-es';
  readonly state: SevGuestStateName;
  readonly policy: number;
  readonly asid: number | null;
  readonly memoryBytes: number;
  readonly vek: string;
  readonly vmsas: readonly string[];
  readonly launchKeys?: { readonly tek: string; readonly tik: string };
  readonly measurement?: { readonly measure: string; readonly mnonce: string };
  readonly secretIvs: readonly string[];
  readonly send?: TransportMeta;
  readonly receive?: TransportMeta;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
/** IV sets hold latin1 strings (see `acceptIvOnce`). */
const ivsOut = (ivs: Set<string>): string[] =>
  [...ivs].map((iv) => Buffer.from(iv, 'latin1').toString('hex'));
const keysOut = (k: SevTransportKeys) => ({ tek: hex(k.tek), tik: hex(k.tik) });
const transportOut = (t: TransportState): TransportMeta => ({
  ...keysOut(t.keys),
  packets: t.packets,
  seenIvs: ivsOut(t.seenIvs),
});

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** The body of `ctx` (an SEV or SEV-ES context outside LUPDATE: the caller checked). */
export function encodeContextBody(ctx: GuestContext): Buffer {
  const meta: ContextMeta = {
    handle: ctx.handle,
    kind: ctx.kind as ContextMeta['kind'],
    state: ctx.state,
    policy: ctx.policy,
    asid: ctx.asid ?? null,
    memoryBytes: ctx.memory.size,
    vek: hex(ctx.vek.sealableBytes()),
    vmsas: ctx.vmsas.map((v) => v.toString('base64')),
    ...(ctx.launchKeys ? { launchKeys: keysOut(ctx.launchKeys) } : {}),
    ...(ctx.measurement
      ? { measurement: { measure: hex(ctx.measurement.measure), mnonce: hex(ctx.measurement.mnonce) } }
      : {}),
    secretIvs: ivsOut(ctx.secretIvs),
    ...(ctx.send ? { send: transportOut(ctx.send) } : {}),
    ...(ctx.receive ? { receive: transportOut(ctx.receive) } : {}),
  };
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const pages = [...ctx.memory.touchedPages()];
  const out = [u32(json.length), json, u32(pages.length)];
  for (const p of pages) out.push(u32(p.index), Buffer.from(p.priv), p.data);
  return Buffer.concat(out);
}

/** A decoded body: everything a context needs, its memory as page images. */
export interface DecodedContextBody {
  readonly context: Omit<GuestContext, 'memory'>;
  readonly memoryBytes: number;
  readonly pages: readonly GuestPageImage[];
}

/** A JSON list whose entries `read` checks one by one (each as field `i` of a one-field object). */
function listOf<T>(
  o: Record<string, unknown>,
  key: string,
  read: (holder: Record<string, unknown>, index: string) => T,
): T[] {
  const v: unknown = o[key];
  if (!Array.isArray(v)) throw new TypeError(`${key} must be a list`);
  return (v as unknown[]).map((item, i) => read({ [String(i)]: item }, String(i)));
}

function ivsIn(o: Record<string, unknown>, key: string): Set<string> {
  return new Set(listOf(o, key, field.hex).map((iv) => iv.toString('latin1')));
}

function keysIn(value: unknown, what: string): SevTransportKeys {
  const o = field.object(value, what);
  return { tek: field.hex(o, 'tek', 16), tik: field.hex(o, 'tik', 16) };
}

function transportIn(value: unknown, what: string): TransportState | undefined {
  if (value === undefined) return undefined;
  const o = field.object(value, what);
  return { keys: keysIn(o, what), packets: field.integer(o, 'packets'), seenIvs: ivsIn(o, 'seenIvs') };
}

function parseMeta(value: unknown): Omit<DecodedContextBody, 'pages'> {
  const o = field.object(value, 'context');
  const kind = field.string(o, 'kind');
  if (kind !== 'sev' && kind !== 'sev-es') throw new TypeError(`kind ${kind} is not exported`);
  const state = field.string(o, 'state') as SevGuestStateName;
  if (!(state in SEV_GUEST_STATE)) throw new TypeError(`unknown state ${state}`);
  const asid = o.asid === null ? undefined : field.integer(o, 'asid', 0xffff);
  const m = o.measurement === undefined ? undefined : field.object(o.measurement, 'measurement');
  return {
    memoryBytes: field.integer(o, 'memoryBytes', MAX_GUEST_MEMORY_BYTES),
    context: {
      handle: field.integer(o, 'handle'),
      kind,
      state,
      policy: field.integer(o, 'policy'),
      asid,
      vek: MemoryEncryptionKey.fromSealedBytes(field.hex(o, 'vek', VEK_SIZE)),
      vmsas: listOf(o, 'vmsas', field.base64),
      ...(o.launchKeys === undefined ? {} : { launchKeys: keysIn(o.launchKeys, 'launchKeys') }),
      ...(m
        ? { measurement: { measure: field.hex(m, 'measure', 32), mnonce: field.hex(m, 'mnonce', 16) } }
        : {}),
      secretIvs: ivsIn(o, 'secretIvs'),
      send: transportIn(o.send, 'send'),
      receive: transportIn(o.receive, 'receive'),
    },
  };
}

/** Decodes a body; throws (TypeError/RangeError) on any inconsistency, including trailing bytes. */
export function decodeContextBody(body: Buffer): DecodedContextBody {
  const metaLength = body.readUInt32LE(0);
  const meta = parseMeta(JSON.parse(body.subarray(4, 4 + metaLength).toString('utf8')));
  let at = 4 + metaLength;
  const count = body.readUInt32LE(at);
  at += 4;
  if (body.length !== at + count * PAGE_RECORD_SIZE)
    throw new RangeError('page records do not fill the body');
  const pages: GuestPageImage[] = [];
  for (let i = 0; i < count; i++, at += PAGE_RECORD_SIZE) {
    pages.push({
      index: body.readUInt32LE(at),
      priv: body.subarray(at + 4, at + 4 + BLOCKS_PER_PAGE),
      data: body.subarray(at + 4 + BLOCKS_PER_PAGE, at + PAGE_RECORD_SIZE),
    });
  }
  return { ...meta, pages };
}
