import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerDirtyPages, dirtyEntries, parseMaps, processTree, softDirtyWorks } from './soft-dirty.js';

/** A pagemap entry with the given bits (63 present, 62 swapped, 61 file/shared, 55 soft-dirty). */
const entry = (...bits: number[]): Buffer => {
  const b = Buffer.alloc(8);
  let v = 0n;
  for (const bit of bits) v |= 1n << BigInt(bit);
  b.writeBigUInt64LE(v);
  return b;
};

describe('pagemap entries the next pre-dump sends', () => {
  it('counts present or swapped, soft-dirty, anonymous pages only', () => {
    const map = Buffer.concat([
      entry(63, 55), // dirty anonymous: counted
      entry(62, 55), // swapped and dirty: counted
      entry(63), // clean since the pre-dump
      entry(63, 61, 55), // a file page: CRIU does not dump it
      entry(55), // not present (a soft-dirty VMA reports its holes soft-dirty)
      entry(),
    ]);
    expect(dirtyEntries(map)).toBe(2);
    expect(dirtyEntries(Buffer.alloc(0))).toBe(0);
    // a truncated trailing entry is not read
    expect(dirtyEntries(Buffer.concat([entry(63, 55), Buffer.alloc(4)]))).toBe(1);
  });

  it('reads the mappings of a maps file, leaving out [vsyscall] and lines that are not mappings', () => {
    const maps = [
      '55d0c0000000-55d0c0002000 r--p 00000000 fe:00 123   /usr/bin/node',
      '7f0000000000-7f0000100000 rw-p 00000000 00:00 0 ',
      '7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]',
      'ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]',
      'garbage',
      '',
    ].join('\n');
    expect(parseMaps(maps)).toEqual([
      { start: 0x55d0c0000000, end: 0x55d0c0002000, name: '/usr/bin/node' },
      { start: 0x7f0000000000, end: 0x7f0000100000, name: '' },
      { start: 0x7ffd1000, end: 0x7ffd3000, name: '[stack]' },
    ]);
  });
});

describe('a container process tree read through a /proc laid out as the kernel does', () => {
  let proc: string;
  /** A process whose only mapping is `pages` pages at 0x10000 with these pagemap entries. */
  const processWith = async (pid: number, entries: Buffer[], children: Record<string, string> = {}) => {
    await mkdir(join(proc, String(pid), 'task', String(pid)), { recursive: true });
    const start = 0x10000;
    const end = start + entries.length * 4096;
    await writeFile(
      join(proc, String(pid), 'maps'),
      `${start.toString(16)}-${end.toString(16)} rw-p 0 0:0 0\n`,
    );
    // the pagemap is indexed by page number: the mapping's entries sit at (start / 4096) * 8
    await writeFile(
      join(proc, String(pid), 'pagemap'),
      Buffer.concat([Buffer.alloc((start / 4096) * 8), ...entries]),
    );
    await writeFile(join(proc, String(pid), 'task', String(pid), 'children'), '');
    for (const [tid, list] of Object.entries(children)) {
      await mkdir(join(proc, String(pid), 'task', tid), { recursive: true });
      await writeFile(join(proc, String(pid), 'task', tid, 'children'), list);
    }
  };

  beforeAll(async () => {
    proc = await mkdtemp(join(tmpdir(), 'ccm-soft-dirty-'));
    // init 100 (3 dirty of 5) with a child 200 of its main thread and a child 300 of thread 101
    await processWith(100, [entry(63, 55), entry(63, 55), entry(63), entry(63, 55), entry()], {
      '100': '200 ',
      '101': '300',
    });
    await processWith(200, [entry(63, 55)]);
    await processWith(300, [entry(62, 55), entry(63, 61, 55)]);
    // a big mapping read in several chunks: 40000 pages, every tenth dirty
    await processWith(
      400,
      Array.from({ length: 40_000 }, (_, i) => (i % 10 === 0 ? entry(63, 55) : entry(63))),
    );
  });
  afterAll(() => rm(proc, { recursive: true, force: true }));

  it('finds the descendants of every thread', async () => {
    expect((await processTree(100, proc)).sort()).toEqual([100, 200, 300]);
  });

  it('adds up the dirty pages of every process in the tree', async () => {
    expect(await containerDirtyPages(100, proc)).toBe(3 + 1 + 1);
    expect(await containerDirtyPages(200, proc)).toBe(1);
    expect(await containerDirtyPages(400, proc)).toBe(4000);
  });

  it('fails for a process that is not there (the driver then uses the round’s own pages)', async () => {
    await expect(containerDirtyPages(999, proc)).rejects.toThrow(/ENOENT/);
  });
});

describe("whether this host's kernel keeps soft-dirty bits", () => {
  const config = (() => {
    try {
      return gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
    } catch {
      return undefined;
    }
  })();
  const built = config ? /^CONFIG_MEM_SOFT_DIRTY=y$/m.test(config) : undefined;
  if (built === undefined) console.warn('[soft-dirty] skipping: no /proc/config.gz to compare with');
  it.skipIf(built === undefined)('agrees with the kernel configuration', async () => {
    expect(await softDirtyWorks()).toBe(built);
  });
  it('is false where /proc cannot be read', async () => {
    expect(await softDirtyWorks('/nonexistent')).toBe(false);
  });
});
