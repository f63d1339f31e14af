/**
 * CRIU's log (`-o FILE -v4`): one record per line, `(SS.uuuuuu) Level (file:line): message` for errors
 * and warnings, `(SS.uuuuuu) message` otherwise, and `pie: PID: ...` lines from the parasite. runc only
 * says "criu failed: type NOTIFY errno 0"; the reason is here, so failures are diagnosed from it.
 */
export interface CriuLogRecord {
  /** Seconds since CRIU started, when the line carries a timestamp. */
  readonly t?: number;
  readonly level: 'error' | 'warn' | 'info';
  /** `file:line` of the CRIU source that logged it, for errors and warnings. */
  readonly source?: string;
  readonly message: string;
}

const RECORD = /^\((\d+\.\d+)\)\s+(?:(Error|Warn)\s+\(([^)]+)\):\s*)?(.*)$/;

export function parseCriuLog(text: string): CriuLogRecord[] {
  const out: CriuLogRecord[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line === '') continue;
    const m = RECORD.exec(line);
    if (!m) {
      out.push({ level: 'info', message: line });
      continue;
    }
    const level = m[2] === 'Error' ? 'error' : m[2] === 'Warn' ? 'warn' : 'info';
    out.push({ t: Number(m[1]), level, ...(m[3] ? { source: m[3] } : {}), message: m[4] });
  }
  return out;
}

/** Why CRIU failed, as a stable reason code an operator and a retry policy can act on. */
export const CriuReason = {
  /** A process holds a file on a mount CRIU cannot see (e.g. stdio from outside the container). */
  FileOnForeignMount: 'FILE_ON_FOREIGN_MOUNT',
  /** Memory tracking (soft-dirty) is off in this kernel: no pre-dump, no iterative migration. */
  MemoryTrackingUnavailable: 'MEMORY_TRACKING_UNAVAILABLE',
  /** The images directory holds no checkpoint (nothing dumped, or the wrong dir). */
  NoImages: 'NO_IMAGES',
  /** The task has an established TCP connection and `--tcp-established` was not given. */
  TcpEstablished: 'TCP_ESTABLISHED',
  /** The process to dump does not exist (any more). */
  ProcessGone: 'PROCESS_GONE',
  /** A PID the restore needs is taken in the target. */
  PidInUse: 'PID_IN_USE',
  /** The kernel lacks what CRIU needs (sock_diag modules, nftables, tun, vDSO layout). */
  KernelUnsupported: 'KERNEL_UNSUPPORTED',
  /** Permission denied by the kernel or a security module. */
  PermissionDenied: 'PERMISSION_DENIED',
  Unknown: 'UNKNOWN',
} as const;
export type CriuReasonCode = (typeof CriuReason)[keyof typeof CriuReason];

/** The diagnosis of a failed CRIU run: the first error that says why, with its fields. */
export interface CriuDiagnosis {
  readonly reason: CriuReasonCode;
  /** The log record that names the cause (absent when the log had no error). */
  readonly record?: CriuLogRecord;
  /** Fields read from the record (fd, path, pid, ...). */
  readonly details: Readonly<Record<string, string | number>>;
  /** Every error record, in order, for the operator. */
  readonly errors: readonly CriuLogRecord[];
}

/** Errors CRIU logs on every run here that never cause a failure. */
const HARMLESS = [/rlimit: Can't setup RLIMIT_NOFILE/];
/** Summaries that follow the real error and say nothing of their own. */
const SUMMARY = [
  /^Dumping FAILED\.?$/,
  /^Restoring FAILED\.?$/,
  /^Pre-dumping FAILED\.?$/,
  /failed with -?\d+$/,
  /^Can't cure \(pid: \d+\) from parasite$/,
];

type Rule = readonly [RegExp, CriuReasonCode, (m: RegExpExecArray) => Record<string, string | number>];
const RULES: readonly Rule[] = [
  [
    /Can't lookup mount=(\d+) for fd=(\d+) path=(.*)$/,
    CriuReason.FileOnForeignMount,
    (m) => ({
      mountId: Number(m[1]),
      fd: Number(m[2]),
      path: m[3],
    }),
  ],
  [
    /Tracking memory is not available|Dirty tracking is OFF/,
    CriuReason.MemoryTrackingUnavailable,
    () => ({}),
  ],
  [/No inventory\.img image|Unexpected EOF on \(empty-image\)/, CriuReason.NoImages, () => ({})],
  [/[Cc]onnected TCP socket.*--tcp-established/, CriuReason.TcpEstablished, () => ({})],
  [
    /(?:Unable to (?:seize|detach from|interrupt task:?)|Can't seize) (\d+).*No such process/,
    CriuReason.ProcessGone,
    (m) => ({
      pid: Number(m[1]),
    }),
  ],
  [
    /Can't fork for (\d+): File exists|[Pp]id (\d+) is busy/,
    CriuReason.PidInUse,
    (m) => ({ pid: Number(m[1] ?? m[2]) }),
  ],
  [
    /Diag module missing|Can't create nftables table|Unable to create tun|vdso: Unexpected rt vDSO|Could not initialize kernel features/,
    CriuReason.KernelUnsupported,
    () => ({}),
  ],
  [/Operation not permitted|Permission denied/, CriuReason.PermissionDenied, () => ({})],
];

/** Picks the real cause out of a failed run's log. */
export function diagnoseCriuLog(records: readonly CriuLogRecord[]): CriuDiagnosis {
  const errors = records.filter((r) => r.level === 'error' && !HARMLESS.some((h) => h.test(r.message)));
  // A rule match anywhere wins over order (a missing-images error follows a generic one); else the
  // first error that is not a summary.
  for (const [re, reason, fields] of RULES) {
    for (const r of errors) {
      const m = re.exec(r.message);
      if (m) return { reason, record: r, details: fields(m), errors };
    }
  }
  const first = errors.find((r) => !SUMMARY.some((s) => s.test(r.message))) ?? errors[0];
  return { reason: CriuReason.Unknown, ...(first ? { record: first } : {}), details: {}, errors };
}
