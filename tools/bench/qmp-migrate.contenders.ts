import { freePort } from '@ccm/testing';
import {
  driveMigration,
  startQemu,
  type MigrationFigures,
  type QemuProcess,
  type QemuGuestSpec,
} from '@ccm/qmp';

/**
 * The contenders of the QMP migration benchmark (qmp-migrate.bench.ts): each drives the same live
 * migration of the tiny guest its own way. For every run a contender boots a source and prepares a
 * destination (the bench then waits for the guest to run), migrates, and ends both; the bench checks
 * that the guest runs on at the destination.
 */

/** A booted source and a destination waiting for the stream, as a contender made them. */
export interface GuestPair {
  /** Serial consoles of both ends (the bench reads the guest's counter there). */
  srcSerial: string;
  dstSerial: string;
  /** Ends both VMs. */
  stop(): Promise<void>;
}

/** What one migration run yields: QEMU's figures plus the wall time from the contender's point of view. */
export interface RunResult {
  figures: MigrationFigures;
  /** From the start of the contender's migrate call to it knowing the migration finished. */
  wallMs: number;
}

export interface MigrationLimits {
  downtimeLimitMs: number;
  maxBandwidthBytesPerSec: number;
}

/** One way of driving a live migration of a pair it started itself. */
export interface Contender<P extends GuestPair = GuestPair> {
  name: string;
  /** Once before the first run (e.g. start services). */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  startPair(spec: QemuGuestSpec): Promise<P>;
  migrate(pair: P, limits: MigrationLimits): Promise<RunResult>;
}

interface QemuPair extends GuestPair {
  src: QemuProcess;
  dst: QemuProcess;
  uri: string;
}

/** The baseline: two QEMUs on loopback, and @ccm/qmp's driveMigration talking straight to both. */
export const bareQmp: Contender<QemuPair> = {
  name: 'bare QMP client',
  async startPair(spec) {
    const src = await startQemu({ ...spec, name: 'bench-src' });
    try {
      const uri = `tcp:127.0.0.1:${await freePort()}`;
      const dst = await startQemu({ ...spec, name: 'bench-dst', incoming: uri });
      return {
        src,
        dst,
        uri,
        srcSerial: src.paths.serialLog,
        dstSerial: dst.paths.serialLog,
        stop: async () => {
          await Promise.all([src.kill(), dst.kill()]);
        },
      };
    } catch (err) {
      await src.kill();
      throw err;
    }
  },
  async migrate({ src, dst, uri }, limits) {
    const t0 = Date.now();
    const out = await driveMigration(src.qmp, { uri, ...limits, destination: dst.qmp });
    return { figures: out.figures, wallMs: Date.now() - t0 };
  },
};
