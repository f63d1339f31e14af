import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { bzImagePayload, extractVmlinux, KernelExtractError } from './kernel.js';

const FAKE_ELF = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), Buffer.alloc(500, 7)]);

/** A minimal bzImage: boot header (protocol 2.15), setup sectors, then the payload at payload_offset. */
function bzImage(payload: Buffer, setupSects = 2): Buffer {
  const pmOffset = (setupSects + 1) * 512;
  const payloadOffset = 0x40; // some decompressor code precedes the payload
  const img = Buffer.alloc(pmOffset + payloadOffset + payload.length + 64, 0xcc);
  img.writeUInt8(setupSects, 0x1f1);
  img.writeUInt32LE(0x53726448, 0x202); // "HdrS"
  img.writeUInt16LE(0x020f, 0x206);
  img.writeUInt32LE(payloadOffset, 0x248);
  img.writeUInt32LE(payload.length, 0x24c);
  payload.copy(img, pmOffset + payloadOffset);
  return img;
}

describe('extractVmlinux', () => {
  it('finds the payload through the boot header and gunzips it', () => {
    expect(extractVmlinux(bzImage(gzipSync(FAKE_ELF)))).toEqual({ format: 'gzip', vmlinux: FAKE_ELF });
  });

  it('decompresses an xz payload, as in Debian kernels', () => {
    const xz = spawnSync('xz', ['--compress', '--stdout', '--check=crc32'], { input: FAKE_ELF }).stdout;
    expect(extractVmlinux(bzImage(xz, 30))).toEqual({ format: 'xz', vmlinux: FAKE_ELF });
  });

  it.each([
    ['not a bzImage', Buffer.alloc(4096), /no HdrS/],
    ['an unknown compression', bzImage(Buffer.from('BZh91AY&SY')), /unknown payload compression/],
    ['a payload that is not ELF', bzImage(gzipSync(Buffer.from('hello'))), /not an ELF image/],
  ])('rejects %s', (_what, img, message) => {
    expect(() => extractVmlinux(img)).toThrow(KernelExtractError);
    expect(() => extractVmlinux(img)).toThrow(message);
  });

  it('reads setup_sects 0 as 4, as the boot protocol says', () => {
    const img = bzImage(gzipSync(FAKE_ELF), 4);
    img.writeUInt8(0, 0x1f1);
    expect(bzImagePayload(img).format).toBe('gzip');
  });
});
