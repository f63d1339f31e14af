import { CcmError, ErrorCodes } from '@ccm/contracts';
import { PAGE_BYTES } from './sim-container.js';

/** What one sim image round carries besides its pages. */
export interface ImageMeta {
  readonly containerId: string;
  readonly round: number;
  readonly pages: number;
  readonly dirtyPagesPerSec: number;
  readonly final: boolean;
}

/**
 * The sim's checkpoint image of one round: a JSON header (u32 length first), then per page its index
 * (u32 BE) and 4 KiB. This is the plaintext the sealed stream carries; CRIU's images take its place
 * with the real driver.
 */
export function encodeImage(meta: ImageMeta, indices: readonly number[], data: Buffer): Buffer {
  const head = Buffer.from(JSON.stringify(meta), 'utf8');
  const out = Buffer.alloc(4 + head.length + indices.length * (4 + PAGE_BYTES));
  out.writeUInt32BE(head.length, 0);
  head.copy(out, 4);
  let off = 4 + head.length;
  indices.forEach((p, i) => {
    out.writeUInt32BE(p, off);
    data.copy(out, off + 4, i * PAGE_BYTES, (i + 1) * PAGE_BYTES);
    off += 4 + PAGE_BYTES;
  });
  return out;
}

export interface DecodedImage {
  readonly meta: ImageMeta;
  readonly pages: ReadonlyArray<{ index: number; data: Buffer }>;
}

export function decodeImage(b: Buffer): DecodedImage {
  const bad = (why: string) =>
    new CcmError(ErrorCodes.ValidationFailed, `image is malformed: ${why}`, { retryable: false });
  if (b.length < 4) throw bad('short');
  const n = b.readUInt32BE(0);
  if (4 + n > b.length) throw bad('header overruns');
  const meta = JSON.parse(b.subarray(4, 4 + n).toString('utf8')) as ImageMeta;
  const body = b.subarray(4 + n);
  if (body.length % (4 + PAGE_BYTES) !== 0) throw bad('page records cut');
  const pages: Array<{ index: number; data: Buffer }> = [];
  for (let off = 0; off < body.length; off += 4 + PAGE_BYTES) {
    const index = body.readUInt32BE(off);
    if (index >= meta.pages) throw bad(`page ${index} beyond ${meta.pages}`);
    pages.push({ index, data: body.subarray(off + 4, off + 4 + PAGE_BYTES) });
  }
  return { meta, pages };
}
