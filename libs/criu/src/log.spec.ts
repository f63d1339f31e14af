import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CriuReason, diagnoseCriuLog, parseCriuLog } from './log.js';

/** Logs written by CRIU 4.1.1 on this host (tools/criu/trixie-ns.sh), kept verbatim. */
const fixture = (name: string) => readFileSync(join(import.meta.dirname, '__fixtures__', name), 'utf8');

describe('CRIU log diagnosis (real logs)', () => {
  it('parses timestamps, levels and sources', () => {
    const recs = parseCriuLog(fixture('dump-foreign-mount-fd.log'));
    expect(recs.length).toBeGreaterThan(300);
    const err = recs.find((r) => r.level === 'error' && r.source === 'criu/files-reg.c:1790');
    expect(err).toMatchObject({ message: "Can't lookup mount=23 for fd=0 path=/dev/null" });
    expect(err?.t).toBeCloseTo(0.22068, 4);
    const warn = parseCriuLog(fixture('dump-parasite-cure-failed.log')).find((r) => r.level === 'warn');
    expect(warn).toMatchObject({ source: 'compel/src/lib/infect.c:133' });
  });

  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['dump-foreign-mount-fd.log', CriuReason.FileOnForeignMount, { fd: 0, path: '/dev/null', mountId: 23 }],
    ['dump-parasite-cure-failed.log', CriuReason.FileOnForeignMount, { fd: 10, path: '/dev/null' }],
    ['pre-dump-no-track-mem.log', CriuReason.MemoryTrackingUnavailable, {}],
    ['restore-no-images.log', CriuReason.NoImages, {}],
  ];
  it.each(cases)('%s → %s', (file, reason, details) => {
    const d = diagnoseCriuLog(parseCriuLog(fixture(file)));
    expect(d.reason).toBe(reason);
    expect(d.details).toMatchObject(details);
    expect(d.record?.level).toBe('error');
    expect(d.errors.some((e) => /RLIMIT_NOFILE/.test(e.message))).toBe(false);
  });

  it('names the first real error when no rule knows it, not the summary after it', () => {
    const d = diagnoseCriuLog(
      parseCriuLog(
        [
          "(00.1) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
          '(00.2) Error (criu/foo.c:1): something new broke',
          '(00.3) Error (criu/cr-dump.c:2111): Dumping FAILED.',
        ].join('\n'),
      ),
    );
    expect(d).toMatchObject({ reason: CriuReason.Unknown, record: { message: 'something new broke' } });
  });

  it.each([
    [
      '(00.5) Error (criu/sk-inet.c:1): inet: Connected TCP socket, consider using --tcp-established option.',
      CriuReason.TcpEstablished,
    ],
    ["(00.5) Error (criu/cr-restore.c:1): Can't fork for 4999: File exists", CriuReason.PidInUse],
    ['(00.5) Error (criu/sockets.c:1): sockets: Diag module missing (-2)', CriuReason.KernelUnsupported],
    ['(00.5) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds', CriuReason.KernelUnsupported],
  ])('%s', (line, reason) => {
    expect(diagnoseCriuLog(parseCriuLog(line)).reason).toBe(reason);
  });

  it('an empty log diagnoses as unknown with no record', () => {
    expect(diagnoseCriuLog(parseCriuLog(''))).toEqual({
      reason: CriuReason.Unknown,
      details: {},
      errors: [],
    });
  });
});
