import { PAGE_SIZE } from './memory.js';

/** QEMU's MigrationStatus values the simulator goes through. */
export type SimMigrationStatus =
  | 'none'
  | 'setup'
  | 'active'
  | 'pre-switchover'
  | 'device'
  | 'postcopy-active'
  | 'postcopy-paused'
  | 'completed'
  | 'failed'
  | 'cancelling'
  | 'cancelled';

/** Migration settings as QEMU keeps them (capabilities and parameters). */
export interface SimMigrationSettings {
  downtimeLimitMs: number;
  maxBandwidth: number;
  autoConverge: boolean;
  pauseBeforeSwitchover: boolean;
  events: boolean;
  /** `postcopy-ram`: `migrate-start-postcopy` may switch the migration to post-copy. */
  postcopyRam: boolean;
  /** Target chain for SEND_START (`migrate-set-parameters` sev-pdh, sev-plat-cert, sev-amd-cert). */
  sev?: { pdh: string; platCert: string; amdCert: string };
}

/** Counters behind query-migrate, in QEMU's terms. */
export class MigrationStats {
  status: SimMigrationStatus = 'none';
  readonly startedAt = Date.now();
  setupTime = 0;
  totalTime = 0;
  downtime = 0;
  expectedDowntime = 0;
  transferred = 0;
  remainingPages = 0;
  duplicate = 0;
  normal = 0;
  dirtySyncCount = 0;
  dirtyPagesRate = 0;
  mbps = 0;
  throttle = 0;
  errorDesc?: string;

  constructor(private readonly totalBytes: number) {}

  /** The query-migrate answer (fields as QEMU names them). */
  info(): Record<string, unknown> {
    if (this.status === 'none') return {};
    const done = this.status === 'completed';
    const elapsed = done ? this.totalTime : Date.now() - this.startedAt;
    return {
      status: this.status,
      'total-time': elapsed,
      ...(done ? { downtime: this.downtime } : { 'expected-downtime': Math.round(this.expectedDowntime) }),
      'setup-time': this.setupTime,
      ram: {
        transferred: this.transferred,
        remaining: this.remainingPages * PAGE_SIZE,
        total: this.totalBytes,
        duplicate: this.duplicate,
        normal: this.normal,
        'normal-bytes': this.normal * PAGE_SIZE,
        'dirty-pages-rate': Math.round(this.dirtyPagesRate),
        mbps: this.mbps,
        'dirty-sync-count': this.dirtySyncCount,
        'page-size': PAGE_SIZE,
        'pages-per-second': Math.round((this.mbps * 1e6) / 8 / PAGE_SIZE),
        'postcopy-requests': 0,
      },
      ...(this.throttle ? { 'cpu-throttle-percentage': this.throttle } : {}),
      ...(this.errorDesc ? { 'error-desc': this.errorDesc } : {}),
    };
  }
}
