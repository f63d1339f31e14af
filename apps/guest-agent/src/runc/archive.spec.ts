import { mkdtemp, readdir, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCcmError } from '@ccm/contracts';
import { describe, expect, it } from 'vitest';
import {
  ARCHIVE_MAGIC,
  type ArchivePiece,
  archiveStream,
  ArchiveUnpacker,
  listImageDir,
  packArchive,
  readImageDir,
  unpackArchive,
  writeImageDir,
} from './archive.js';

const files = [
  { name: 'inventory.img', data: Buffer.from('inv') },
  { name: 'pages-1.img', data: Buffer.alloc(8192, 7) },
  { name: 'empty.img', data: Buffer.alloc(0) },
];

const malformed = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (isCcmError(e) && e.code === 'VALIDATION_FAILED') return e.message;
    throw e;
  }
  throw new Error('no error');
};

/** An archive with the given header (for headers packArchive would never write). */
const withHeader = (head: unknown, body = Buffer.alloc(0)): Buffer => {
  const h = Buffer.from(typeof head === 'string' ? head : JSON.stringify(head));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length, 0);
  return Buffer.concat([ARCHIVE_MAGIC, len, h, body]);
};

describe('image archive', () => {
  it('packs and unpacks files and meta exactly', () => {
    const a = unpackArchive(packArchive({ meta: { round: 2, final: false }, files }));
    expect(a.meta).toEqual({ round: 2, final: false });
    expect(a.files.map((f) => [f.name, f.data.length])).toEqual([
      ['inventory.img', 3],
      ['pages-1.img', 8192],
      ['empty.img', 0],
    ]);
    expect(a.files[1].data.equals(files[1].data)).toBe(true);
  });

  it('refuses names that could leave the directory, and duplicates, when packing', () => {
    for (const name of ['../x', 'a/b', '.hidden', '', 'x\n']) {
      expect(malformed(() => packArchive({ meta: {}, files: [{ name, data: Buffer.alloc(1) }] }))).toMatch(
        /name/,
      );
    }
    expect(malformed(() => packArchive({ meta: {}, files: [files[0], files[0]] }))).toMatch(/twice/);
  });

  it.each<[string, () => Buffer, RegExp]>([
    ['no magic', () => Buffer.from('tar archive'), /magic/],
    ['a cut buffer', () => packArchive({ meta: {}, files }).subarray(0, 40), /overruns/],
    ['a cut last file', () => packArchive({ meta: {}, files }).subarray(0, -1), /overruns/],
    [
      'bytes after the last file',
      () => Buffer.concat([packArchive({ meta: {}, files }), Buffer.from('x')]),
      /after the last/,
    ],
    ['a header that is not JSON', () => withHeader('{not json'), /not JSON/],
    ['no meta', () => withHeader({ files: [] }), /no meta/],
    ['no file list', () => withHeader({ meta: {}, files: 'x' }), /no file list/],
    [
      'a path in a name',
      () => withHeader({ meta: {}, files: [{ name: '../../etc/passwd', size: 0 }] }),
      /not allowed/,
    ],
    ['a negative size', () => withHeader({ meta: {}, files: [{ name: 'a', size: -1 }] }), /no size/],
    [
      'a file twice',
      () =>
        withHeader({
          meta: {},
          files: [
            { name: 'a', size: 0 },
            { name: 'a', size: 0 },
          ],
        }),
      /twice/,
    ],
  ])('refuses %s with VALIDATION_FAILED', (_what, make, why) => {
    expect(malformed(() => unpackArchive(make()))).toMatch(why);
  });

  it('reads a CRIU image directory without its parent link and writes it back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-archive-'));
    try {
      await mkdir(join(dir, 'round-2'));
      for (const f of files) await writeFile(join(dir, 'round-2', f.name), f.data);
      await symlink('../round-1', join(dir, 'round-2', 'parent'));
      const read = await readImageDir(join(dir, 'round-2'));
      expect(read.map((f) => f.name)).toEqual(['empty.img', 'inventory.img', 'pages-1.img']);
      const back = unpackArchive(packArchive({ meta: {}, files: read }));
      await writeImageDir(join(dir, 'copy'), back.files);
      expect((await readdir(join(dir, 'copy'))).sort()).toEqual([
        'empty.img',
        'inventory.img',
        'pages-1.img',
      ]);
      await mkdir(join(dir, 'round-2', 'sub'));
      await expect(readImageDir(join(dir, 'round-2'))).rejects.toThrow(/not a regular file/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('streams a directory file by file, in pieces, as the very bytes packArchive gives', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-archive-'));
    try {
      for (const f of files) await writeFile(join(dir, f.name), f.data);
      const header = { meta: { round: 1 }, files: await listImageDir(dir) };
      const pieces: Buffer[] = [];
      for await (const p of archiveStream(dir, header, 3000)) pieces.push(p);
      expect(Math.max(...pieces.map((p) => p.length))).toBeLessThanOrEqual(Math.max(3000, pieces[0].length));
      expect(pieces.length).toBeGreaterThan(files.length);
      const whole = packArchive({ meta: header.meta, files: await readImageDir(dir) });
      expect(Buffer.concat(pieces).equals(whole)).toBe(true);
      // A file that is not what was listed when it is read is refused, not sent cut.
      await writeFile(join(dir, 'pages-1.img'), Buffer.alloc(100));
      await expect(collect(archiveStream(dir, header, 3000))).rejects.toThrow(/shrank/);
      await writeFile(join(dir, 'pages-1.img'), Buffer.alloc(9000));
      await expect(collect(archiveStream(dir, header, 3000))).rejects.toThrow(/grew/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('image archive unpacked as it arrives', () => {
  const whole = packArchive({ meta: { round: 2 }, files });
  /** The pieces an unpacker finds in `b` handed over in cuts of `n` bytes. */
  const unpackIn = (b: Buffer, n: number): { pieces: ArchivePiece[]; u: ArchiveUnpacker } => {
    const u = new ArchiveUnpacker();
    const pieces: ArchivePiece[] = [];
    for (let off = 0; off < b.length; off += n) pieces.push(...u.push(b.subarray(off, off + n)));
    return { pieces, u };
  };

  it.each([1, 7, 100, 5000, whole.length])(
    'in pieces of %i bytes: the header, then each file whole and in order',
    (n) => {
      const { pieces, u } = unpackIn(whole, n);
      expect(u.complete).toBe(true);
      const [head, ...data] = pieces;
      expect(head).toEqual({
        kind: 'header',
        header: { meta: { round: 2 }, files: files.map((f) => ({ name: f.name, size: f.data.length })) },
      });
      for (const f of files) {
        const mine = data.filter((p) => p.kind === 'data' && p.name === f.name) as Array<{
          data: Buffer;
          end: boolean;
        }>;
        expect(Buffer.concat(mine.map((p) => p.data)).equals(f.data)).toBe(true);
        expect(mine.map((p) => p.end)).toEqual([...mine.slice(1).map(() => false), true]);
      }
    },
  );

  it('is not complete while a file is cut, and refuses what unpackArchive refuses', () => {
    expect(unpackIn(whole.subarray(0, -1), 64).u.complete).toBe(false);
    expect(unpackIn(whole.subarray(0, 20), 64).u.complete).toBe(false);
    expect(malformed(() => unpackIn(Buffer.concat([whole, Buffer.from('x')]), 64))).toMatch(/after the last/);
    expect(malformed(() => unpackIn(Buffer.from('tar archive, not ours'), 4))).toMatch(/magic/);
    expect(
      malformed(() => unpackIn(withHeader({ meta: {}, files: [{ name: '../x', size: 1 }] }), 3)),
    ).toMatch(/not allowed/);
  });
});

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of it) out.push(b);
  return out;
}
