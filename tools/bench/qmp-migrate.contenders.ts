import { driveMigration, type MigrationFigures, type QemuProcess } from '@ccm/qmp';

/**
 * The contenders of the QMP migration benchmark (qmp-migrate.bench.ts): each drives the same live
 * migration of the tiny guest its own way. The bench starts a fresh pair for every run, checks that the
 * guest runs on at the destination afterwards, and kills both QEMUs.
 */

/** A booted source and a destination waiting on `uri`. */
export interface GuestPair {
  src: QemuProcess;
  dst: QemuProcess;
  uri: string;
}

/** What one migration run yields: QEMU's figures plus the wall time from the contender's point of view. */
export interface RunResult {
  figures: MigrationFigures;
  /** From the start of the contender's migrate call to it knowing the migration finished. */
  wallMs: number;
}

/** One way of driving a live migration of `pair` with the given limits. */
export interface Contender {
  name: string;
  migrate(
    pair: GuestPair,
    limits: { downtimeLimitMs: number; maxBandwidthBytesPerSec: number },
  ): Promise<RunResult>;
}

/** The baseline: @ccm/qmp's driveMigration talking straight to both QEMUs. */
export const bareQmp: Contender = {
  name: 'bare QMP client',
  async migrate({ src, dst, uri }, limits) {
    const t0 = Date.now();
    const out = await driveMigration(src.qmp, { uri, ...limits, destination: dst.qmp });
    return { figures: out.figures, wallMs: Date.now() - t0 };
  },
};

/** Add further contenders here (e.g. the host agent over NATS). */
export const CONTENDERS: Contender[] = [bareQmp];
