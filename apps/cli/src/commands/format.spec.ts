import { describe, expect, it } from 'vitest';
import { eventLine, figuresText } from './format.js';

describe('figuresText', () => {
  it("puts a container's frozen time beside the blackout", () => {
    expect(
      figuresText({ blackoutMs: 420, frozenMs: 315, brownoutMs: 12, cutOverMs: 3, peersUpdated: 2 }),
    ).toBe('; blackout 420 ms, container frozen 315 ms, brownout 12 ms (cut-over 3 ms, 2 peers)');
  });

  it('says nothing when nothing was measured', () => {
    expect(figuresText(undefined)).toBe('');
    expect(figuresText({})).toBe('');
  });
});

describe('a progress line', () => {
  const progressed = (p: { bytesTransferred: number; bytesTotal?: number; bytesTotalEstimated?: boolean }) =>
    eventLine({
      name: 'progressed',
      data: {
        migrationId: 'mig-1',
        seq: 7,
        at: '2026-01-01T00:00:00Z',
        reporter: 'container-checkpoint',
        progress: { step: 'pre-copy', stage: 'pre-dump round 2', at: '2026-01-01T00:00:00Z', ...p },
      },
    });

  it('says when the total is only an estimate', () => {
    expect(progressed({ bytesTransferred: 15 << 20, bytesTotal: 20 << 20, bytesTotalEstimated: true })).toBe(
      '    pre-dump round 2 [###############-----]  75% 15.0 MiB / ~20.0 MiB (estimate)',
    );
  });

  it('shows a known total as it is, and no bar without one', () => {
    expect(progressed({ bytesTransferred: 20 << 20, bytesTotal: 20 << 20 })).toBe(
      '    pre-dump round 2 [####################] 100% 20.0 MiB / 20.0 MiB',
    );
    expect(progressed({ bytesTransferred: 1 << 20 })).toBe('    pre-dump round 2: 1.0 MiB sent');
  });
});
