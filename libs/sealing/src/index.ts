export * from './errors.js';
export {
  CHALLENGE_BYTES,
  DEFAULT_CHUNK_BYTES,
  HEADER_BYTES,
  KEY_BYTES,
  MAX_CHUNK_BYTES,
  STREAM_ID_BYTES,
  TAG_BYTES,
  type StreamBinding,
  frameBytes,
} from './format.js';
export { StreamSealer, type StreamChunker } from './sealer.js';
export { StreamOpener, type OpenedChunk } from './opener.js';
export { FrameReader } from './frame-reader.js';
export * from './key-seal.js';
