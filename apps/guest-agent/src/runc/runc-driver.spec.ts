import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CcmError, isCcmError } from '@ccm/contracts';
import { CriuFailedError, CriuInvalidArgumentError, CriuReason } from '@ccm/criu';
import { pollUntil } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { type GuestAgentConfig } from '../config.js';
import { packArchive } from './archive.js';
import { roundMetaProblem, RuncDriver, runtimeError } from './runc-driver.js';

const spec = { pages: 16, dirtyPagesPerSec: 1 };
const round = (meta: Record<string, unknown>) =>
  packArchive({
    meta: { containerId: 'c1', spec, ...meta },
    files: [{ name: 'inventory.img', data: Buffer.from('x') }],
  });

/** A driver whose runc is never reached: every case here is refused before anything is written or run. */
const driver = () =>
  new RuncDriver({
    CCM_GUEST_RUNC_DIR: '/nonexistent/ccm-runc-test',
    CCM_GUEST_RUNC_TIMEOUT_MS: 1000,
  } as GuestAgentConfig);

const refused = async (images: Buffer[]): Promise<CcmError> => {
  const e = await driver()
    .restore('m1', 'c1', images)
    .then(
      () => undefined,
      (x: unknown) => x,
    );
  if (!isCcmError(e)) throw new Error(`expected a typed error, got ${String(e)}`);
  return e;
};

describe('runc driver restore refuses bad rounds before running anything', () => {
  it.each<[string, Buffer[], string, RegExp]>([
    ['garbage', [Buffer.from('not an archive')], 'VALIDATION_FAILED', /magic/],
    ['no round meta', [packArchive({ meta: {}, files: [] })], 'IMAGES_INCOMPLETE', /no valid round meta/],
    [
      'another container',
      [round({ containerId: 'c2', round: 1, final: true })],
      'IMAGES_INCOMPLETE',
      /another container/,
    ],
    [
      'rounds out of order',
      [round({ round: 2, final: false }), round({ round: 1, final: true })],
      'IMAGES_INCOMPLETE',
      /another container or round/,
    ],
    ['no final dump last', [round({ round: 1, final: false })], 'IMAGES_INCOMPLETE', /not a final dump/],
    [
      'a final dump first',
      [round({ round: 1, final: true }), round({ round: 2, final: true })],
      'IMAGES_INCOMPLETE',
      /before the last/,
    ],
    [
      'a parent it cannot have',
      [round({ round: 1, final: false }), round({ round: 2, final: true, parentRound: 5 })],
      'IMAGES_INCOMPLETE',
      /parent/,
    ],
    [
      'a heap beyond the contract',
      [round({ round: 1, final: true, spec: { pages: 1e9, dirtyPagesPerSec: 0 } })],
      'IMAGES_INCOMPLETE',
      /round meta/,
    ],
    [
      'a network address that is no address',
      [round({ round: 1, final: true, spec: { ...spec, network: { address: '10.0.0.1 up', port: 80 } } })],
      'IMAGES_INCOMPLETE',
      /round meta/,
    ],
  ])('%s → %s', async (_what, images, code, why) => {
    const e = await refused(images);
    expect(e.code).toBe(code);
    expect(e.message).toMatch(why);
  });
});

describe('a round checked by its meta, for staging (finality unknown) and for the restore', () => {
  const meta = (m: Record<string, unknown>) => ({ containerId: 'c1', spec, ...m });
  it.each<[string, Record<string, unknown>, number, boolean | undefined, string | undefined]>([
    ['a pre-dump, staged', { round: 1, final: false }, 1, undefined, undefined],
    ['a final dump, staged before the rest arrived', { round: 1, final: true }, 1, undefined, undefined],
    [
      'a final dump before the last round',
      { round: 1, final: true },
      1,
      false,
      'is a final dump before the last round',
    ],
    ['no final dump last', { round: 2, final: false, parentRound: 1 }, 2, true, 'is not a final dump'],
    ['another round', { round: 3, final: false }, 2, undefined, 'holds another container or round'],
    [
      'another container',
      { containerId: 'c2', round: 1, final: true },
      1,
      true,
      'holds another container or round',
    ],
    [
      'a parent it cannot have',
      { round: 3, final: true, parentRound: 1 },
      3,
      true,
      'names a parent round it cannot have',
    ],
  ])('%s', (_what, m, round, last, problem) => {
    const r = roundMetaProblem(meta(m), 'c1', round, last);
    expect(r.problem).toBe(problem);
    if (r.problem === undefined) expect(r.meta.round).toBe(round);
  });

  it('says what is wrong with a meta that is not one', () => {
    expect(roundMetaProblem({ round: 1 }, 'c1', 1).problem).toMatch(/^carries no valid round meta: /);
  });
});

describe('runc/CRIU failures as reply errors', () => {
  it("carry CRIU's reason and log line, typed CONTAINER_RUNTIME_FAILED", () => {
    const record = { level: 'error' as const, message: 'Unknown shit 600 (anon_inode:[io_uring])' };
    const e = runtimeError(
      new CriuFailedError(
        'runc pre-dump',
        1,
        { reason: CriuReason.Unknown, record, details: {}, errors: [record] },
        '',
      ),
    ) as CcmError;
    expect(e.code).toBe('CONTAINER_RUNTIME_FAILED');
    expect(e.details).toEqual({
      criuCode: 'CRIU_FAILED',
      action: 'runc pre-dump',
      reason: 'UNKNOWN',
      log: record.message,
    });
    expect(e.message).toMatch(/io_uring/);
    expect((runtimeError(new CriuInvalidArgumentError('id', 'bad')) as CcmError).code).toBe(
      'CONTAINER_RUNTIME_FAILED',
    );
  });

  it('leave other errors as they are', () => {
    const x = new Error('x');
    expect(runtimeError(x)).toBe(x);
  });
});

/** Runs `f` with a driver whose directory is a fresh temporary one (removed after). */
async function inDriverDir(f: (d: RuncDriver, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ccm-runc-stage-'));
  try {
    await f(
      new RuncDriver({ CCM_GUEST_RUNC_DIR: dir, CCM_GUEST_RUNC_TIMEOUT_MS: 1000 } as GuestAgentConfig),
      dir,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('runc driver stages rounds on the target as they arrive', () => {
  it('writes a whole round, pre-dump or final (and its parent link), at once, leaves anything else to the restore, discard removes them', () =>
    inDriverDir(async (d, dir) => {
      const files = (n: number) => [{ name: 'pages-1.img', data: Buffer.alloc(4096 * n, n) }];
      const pre = (r: number, parentRound?: number) =>
        packArchive({
          meta: { containerId: 'c1', spec, round: r, final: false, ...(parentRound ? { parentRound } : {}) },
          files: files(r),
        });
      expect(await d.stage('m1', 'c1', 1, pre(1))).toBe(true);
      expect(await d.stage('m1', 'c1', 2, pre(2, 1))).toBe(true);
      const base = join(dir, 'images', 'm1', 'c1');
      expect((await readFile(join(base, 'round-2', 'pages-1.img'))).length).toBe(8192);
      expect(await readlink(join(base, 'round-2', 'parent'))).toBe('../round-1');
      // the final dump too (the restore checks the rounds' order and finality itself)
      expect(await d.stage('m1', 'c1', 3, round({ round: 3, final: true, parentRound: 2 }))).toBe(true);
      expect(await readlink(join(base, 'round-3', 'parent'))).toBe('../round-2');
      // not staged: another container, a round that is not the one announced, a parent it cannot have, garbage
      expect(await d.stage('m1', 'c1', 6, round({ round: 6, final: true, parentRound: 4 }))).toBe(false);
      expect(await d.stage('m1', 'c1', 4, round({ containerId: 'c2', round: 4, final: false }))).toBe(false);
      expect(await d.stage('m1', 'c1', 5, pre(6))).toBe(false);
      expect(await d.stage('m1', 'c1', 7, Buffer.from('not an archive'))).toBe(false);
      expect((await readdir(base)).sort()).toEqual(['round-1', 'round-2', 'round-3']);
      await d.discard('m1');
      await expect(readdir(join(dir, 'images', 'm1'))).rejects.toThrow(/ENOENT/);
    }));

  it('writes a round chunk by chunk into a staging directory that becomes the round only at the OK verdict; a refused round leaves nothing', () =>
    inDriverDir(async (d, dir) => {
      const base = join(dir, 'images', 'm1', 'c1');
      const image = packArchive({
        meta: { containerId: 'c1', spec, round: 1, final: false },
        files: [
          { name: 'inventory.img', data: Buffer.from('inv') },
          { name: 'pages-1.img', data: Buffer.alloc(3 * 4096 + 5, 3) },
          { name: 'empty.img', data: Buffer.alloc(0) },
        ],
      });
      const chunks = (n: number) =>
        Array.from({ length: Math.ceil(image.length / n) }, (_, i) => image.subarray(i * n, (i + 1) * n));
      // Received, not yet verified: the files are written, but not as the round.
      const s = d.stager('m1', 'c1', 1);
      for (const c of chunks(1000)) s.push(c);
      const staging = await pollUntil(
        'the round is written into its staging directory',
        () => readdir(base).catch(() => [] as string[]),
        (e) => e.length === 1 && /^staging-1-/.test(e[0]),
        { timeoutMs: 5_000, intervalMs: 20 },
      );
      await pollUntil(
        'every file of the round is in it',
        () => readdir(join(base, staging[0])).catch(() => [] as string[]),
        (e) => e.length === 3,
        { timeoutMs: 5_000, intervalMs: 20 },
      );
      expect(await s.complete(image)).toBe(true);
      expect(await readdir(base)).toEqual(['round-1']);
      expect(
        (await readFile(join(base, 'round-1', 'pages-1.img'))).equals(Buffer.alloc(3 * 4096 + 5, 3)),
      ).toBe(true);
      expect((await readdir(join(base, 'round-1'))).sort()).toEqual([
        'empty.img',
        'inventory.img',
        'pages-1.img',
      ]);

      // Round 2 refused halfway (a chunk altered, dropped, …): its staging directory goes, round 1 stays.
      const r2 = packArchive({
        meta: { containerId: 'c1', spec, round: 2, final: true, parentRound: 1 },
        files: [{ name: 'pages-1.img', data: Buffer.alloc(8192, 2) }],
      });
      const refused = d.stager('m1', 'c1', 2);
      refused.push(r2.subarray(0, 2000));
      refused.abort();
      await pollUntil(
        'the refused round left nothing',
        () => readdir(base),
        (e) => e.length === 1,
        { timeoutMs: 5_000, intervalMs: 20 },
      );
      expect(await readdir(base)).toEqual(['round-1']);
      // A round whose archive is cut at the verdict (never with an OK stream) is not staged either.
      const cut = d.stager('m1', 'c1', 2);
      cut.push(r2.subarray(0, r2.length - 1));
      expect(await cut.complete(r2)).toBe(false);
      expect(await readdir(base)).toEqual(['round-1']);
      // Received again whole: staged.
      const again = d.stager('m1', 'c1', 2);
      for (const c of [r2.subarray(0, 7), r2.subarray(7)]) again.push(c);
      expect(await again.complete(r2)).toBe(true);
      expect((await readdir(base)).sort()).toEqual(['round-1', 'round-2']);
      expect(await readlink(join(base, 'round-2', 'parent'))).toBe('../round-1');
      await d.discard('m1');
    }));
});
