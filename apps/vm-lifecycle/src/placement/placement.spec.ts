import { describe, expect, it } from 'vitest';
import { compareTcb, placeVm, refusalText, type PlacementHost } from './placement.js';

const host = (hostId: string, over: Partial<PlacementHost> = {}): PlacementHost => ({
  hostId,
  live: true,
  sev: true,
  sevSnp: false,
  tcb: { apiMajor: 1, apiMinor: 55, build: 21 },
  memoryMiB: 4096,
  cpus: 4,
  allocatedMemoryMiB: 0,
  allocatedCpus: 0,
  ...over,
});

describe('placement', () => {
  it('never picks the source host, even when it is the best fit', () => {
    const r = placeVm([host('a', { memoryMiB: 65536 }), host('b')], {
      memoryMiB: 512,
      cpus: 1,
      sourceHost: 'a',
    });
    expect(r).toMatchObject({ ok: true, hostId: 'b' });
    expect(r.rejected).toEqual([
      { hostId: 'a', reasons: [{ code: 'source-host', detail: 'the source host (anti-affinity)' }] },
    ]);
  });

  it('prefers the host with the most free memory, then the fewest vCPUs taken, then by id', () => {
    const hosts = [
      host('c', { allocatedMemoryMiB: 1024 }),
      host('b', { allocatedCpus: 2 }),
      host('a', { allocatedCpus: 2 }),
      host('d', { allocatedCpus: 1 }),
    ];
    expect(placeVm(hosts, { memoryMiB: 64, cpus: 1 })).toMatchObject({ ok: true, hostId: 'd' });
    expect(
      placeVm(
        hosts.filter((h) => h.hostId !== 'd'),
        { memoryMiB: 64, cpus: 1 },
      ),
    ).toMatchObject({
      hostId: 'a',
    });
  });

  it('a refusal names every host with every reason it was rejected for', () => {
    const hosts = [
      host('src', { tcb: { apiMajor: 1, apiMinor: 55, build: 21 } }),
      host('dead', { live: false }),
      host('plain', { sev: false }),
      host('old', { tcb: { apiMajor: 1, apiMinor: 55, build: 20 }, allocatedMemoryMiB: 4000 }),
      host('notcb', { tcb: undefined, allocatedCpus: 4 }),
    ];
    const r = placeVm(hosts, { memoryMiB: 512, cpus: 1, sourceHost: 'src' });
    expect(r.ok).toBe(false);
    expect(Object.fromEntries(r.rejected.map((x) => [x.hostId, x.reasons.map((y) => y.code)]))).toEqual({
      src: ['source-host'],
      dead: ['not-live'],
      plain: ['no-sev'],
      old: ['tcb-below-source', 'memory'],
      notcb: ['tcb-below-source', 'cpus'],
    });
    expect(refusalText(r.rejected)).toContain(
      "old: tcb-below-source (TCB 1.55.20 is below the source's 1.55.21)",
    );
    expect(refusalText(r.rejected)).toContain('memory (96 MiB free, 512 MiB needed)');
  });

  it('a higher TCB than the source passes; SNP is required only when asked', () => {
    const hosts = [host('src'), host('new', { tcb: { apiMajor: 1, apiMinor: 56, build: 0 } })];
    expect(placeVm(hosts, { memoryMiB: 1, cpus: 1, sourceHost: 'src' })).toMatchObject({ hostId: 'new' });
    const snp = placeVm(hosts, { memoryMiB: 1, cpus: 1, sourceHost: 'src', requireSnp: true });
    expect(snp.ok).toBe(false);
    expect(snp.rejected.find((x) => x.hostId === 'new')?.reasons.map((x) => x.code)).toEqual(['no-snp']);
    expect(
      placeVm([host('src'), host('s', { sevSnp: true })], {
        memoryMiB: 1,
        cpus: 1,
        sourceHost: 'src',
        requireSnp: true,
      }),
    ).toMatchObject({ ok: true, hostId: 's' });
  });

  it('candidates restrict the choice, and a candidate never registered is named', () => {
    const r = placeVm([host('a'), host('b')], { memoryMiB: 1, cpus: 1, candidates: ['b', 'ghost'] });
    expect(r).toMatchObject({ ok: true, hostId: 'b' });
    expect(r.rejected).toEqual([
      { hostId: 'a', reasons: [{ code: 'not-a-candidate', detail: 'not among b, ghost' }] },
      { hostId: 'ghost', reasons: [{ code: 'not-live', detail: 'never registered' }] },
    ]);
  });

  it('with no host at all the refusal says so', () => {
    const r = placeVm([], { memoryMiB: 1, cpus: 1 });
    expect(r).toEqual({ ok: false, rejected: [] });
    expect(refusalText(r.rejected)).toBe('no host is registered');
  });

  it('orders TCBs by major, minor, then build', () => {
    expect(
      compareTcb({ apiMajor: 1, apiMinor: 0, build: 9 }, { apiMajor: 0, apiMinor: 99, build: 99 }),
    ).toBeGreaterThan(0);
    expect(
      compareTcb({ apiMajor: 1, apiMinor: 2, build: 3 }, { apiMajor: 1, apiMinor: 2, build: 4 }),
    ).toBeLessThan(0);
    expect(compareTcb({ apiMajor: 1, apiMinor: 2, build: 3 }, { apiMajor: 1, apiMinor: 2, build: 3 })).toBe(
      0,
    );
  });
});
