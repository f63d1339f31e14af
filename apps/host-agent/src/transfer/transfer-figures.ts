import { type TransferFigures, type TransferProgress } from '@ccm/contracts';
import { migrationFigures, type MigrationInfo } from '@ccm/qmp';

const PAGE_BYTES = 4096;

/** One query-migrate answer as a progress sample in plain units. */
export function progressOf(info: MigrationInfo, elapsedMs: number): TransferProgress {
  const ram = info.ram;
  return {
    status: info.status ?? 'none',
    ramTransferredBytes: ram?.transferred ?? 0,
    ramRemainingBytes: ram?.remaining ?? 0,
    ramTotalBytes: ram?.total ?? 0,
    dirtyPagesRate: ram?.['dirty-pages-rate'] ?? 0,
    pageSizeBytes: ram?.['page-size'] ?? PAGE_BYTES,
    passes: ram?.['dirty-sync-count'] ?? 0,
    expectedDowntimeMs: info['expected-downtime'] ?? 0,
    mbps: ram?.mbps ?? 0,
    cpuThrottlePercent: Number(
      (info as { 'cpu-throttle-percentage'?: number })['cpu-throttle-percentage'] ?? 0,
    ),
    elapsedMs,
  };
}

/** The final figures of a finished migration, from QEMU's (re-read) answer. */
export function figuresOf(info: MigrationInfo): TransferFigures {
  const f = migrationFigures(info);
  return {
    status: f.status,
    totalTimeMs: f.totalTimeMs,
    downtimeMs: f.downtimeMs,
    setupTimeMs: f.setupTimeMs,
    transferredBytes: f.transferredBytes,
    passes: f.passes,
    mbps: f.mbps,
  };
}
