import { hkdfSync } from 'node:crypto';
import { HKDF_INFO_PREFIX, KEY_BYTES, type StreamBinding } from './format.js';

/** The AES-256-GCM key of one stream (see format.ts): bound to migration, round, stream id, challenge. */
export function deriveStreamKey(
  migrationKey: Uint8Array,
  binding: StreamBinding,
  streamId: Uint8Array,
): Buffer {
  if (migrationKey.length !== KEY_BYTES) throw new RangeError(`the migration key must be ${KEY_BYTES} bytes`);
  const round = Buffer.alloc(4);
  round.writeUInt32BE(binding.round);
  const info = Buffer.concat([
    Buffer.from(HKDF_INFO_PREFIX, 'ascii'),
    Buffer.from([0]),
    Buffer.from(binding.migrationId, 'utf8'),
    Buffer.from([0]),
    round,
  ]);
  const salt = Buffer.concat([streamId, binding.challenge]);
  return Buffer.from(hkdfSync('sha256', migrationKey, salt, info, KEY_BYTES));
}
