import { type CcmError, isCcmError } from '@ccm/contracts';
import { CriuFailedError, CriuInvalidArgumentError, CriuReason } from '@ccm/criu';
import { describe, expect, it } from 'vitest';
import { type GuestAgentConfig } from '../config.js';
import { packArchive } from './archive.js';
import { RuncDriver, runtimeError } from './runc-driver.js';

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
  ])('%s → %s', async (_what, images, code, why) => {
    const e = await refused(images);
    expect(e.code).toBe(code);
    expect(e.message).toMatch(why);
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
