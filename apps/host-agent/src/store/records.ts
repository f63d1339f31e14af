import {
  isFinalVmPhase,
  type MigrationParams,
  type ResumeBlocked,
  type TransferFigures,
  type TransferPhase,
  type TransferPostcopy,
  type TransferProgress,
  type TransferView,
  type VmPhase,
  type VmSpec,
  type VmView,
} from '@ccm/contracts';
import { type GuestLease } from '../vm/guest-net.js';

/** SEV facts of one VM. */
export interface VmSev {
  policy: number;
  /** LAUNCH_MEASURE blob, base64 (local SEV launches), and the firmware version that made it. */
  measurement?: string;
  platform?: { apiMajor: number; apiMinor: number; build: number };
  secretInjected: boolean;
  /**
   * Bytes of the injected LAUNCH_SECRET data: what the software secure processor's secret page holds for
   * the guest (the rest of the page it gets is zero).
   */
  secretBytes?: number;
}

/** One VM as the agent keeps it (memory and the `vm` table). */
export interface VmRecord {
  vmId: string;
  driver: 'qemu' | 'sim';
  origin: 'local' | 'incoming';
  phase: VmPhase;
  reason?: string;
  spec: VmSpec;
  sev?: VmSev;
  pid?: number;
  runDir: string;
  incomingUri?: string;
  migrationId?: string;
  /** Its address on the host's guest network (CCM_GUEST_NET), held while the VM lives. */
  guestNet?: GuestLease;
  /**
   * Set when the VM moved away with its {@link guestNet}: the guest still uses that address on another
   * host, so this host keeps it lent (leases it to no other VM) until the guest ends there. An incoming
   * VM that carries it back keeps the mark until it has arrived.
   */
  guestNetLentAt?: Date;
  /** Set when a post-copy migration of this VM failed past the point of no return: `resume` refuses. */
  resumeBlocked?: ResumeBlocked;
  createdAt: Date;
  phaseChangedAt: Date;
}

/** One outgoing migration (memory and the `transfer` table). */
export interface TransferRecord {
  migrationId: string;
  vmId: string;
  phase: TransferPhase;
  uri: string;
  params: MigrationParams;
  step?: string;
  progress?: TransferProgress;
  figures?: TransferFigures;
  /** Set when the migration switched to post-copy (see `TransferPostcopySchema`). */
  postcopy?: TransferPostcopy;
  errorCode?: string;
  reason?: string;
  startedAt: Date;
  phaseChangedAt: Date;
  endedAt?: Date;
}

export function vmView(hostId: string, r: VmRecord): VmView {
  return {
    vmId: r.vmId,
    hostId,
    driver: r.driver,
    origin: r.origin,
    phase: r.phase,
    ...(r.reason ? { reason: r.reason } : {}),
    ...(r.pid ? { pid: r.pid } : {}),
    spec: r.spec,
    ...(r.sev
      ? {
          sev: {
            policy: r.sev.policy,
            secretInjected: r.sev.secretInjected,
            ...(r.sev.measurement ? { measurement: r.sev.measurement } : {}),
          },
        }
      : {}),
    ...(r.incomingUri ? { incomingUri: r.incomingUri } : {}),
    ...(r.migrationId ? { migrationId: r.migrationId } : {}),
    // the pool takes the address back when the VM ends: an ended VM holds none
    ...(r.guestNet && !isFinalVmPhase(r.phase) ? { guestNet: r.guestNet } : {}),
    ...(r.guestNet && r.guestNetLentAt
      ? { guestNetLent: { ...r.guestNet, since: r.guestNetLentAt.toISOString() } }
      : {}),
    ...(r.resumeBlocked ? { resumeBlocked: r.resumeBlocked } : {}),
    runDir: r.runDir,
    createdAt: r.createdAt.toISOString(),
    phaseChangedAt: r.phaseChangedAt.toISOString(),
  };
}

export function transferView(hostId: string, r: TransferRecord): TransferView {
  return {
    migrationId: r.migrationId,
    vmId: r.vmId,
    hostId,
    phase: r.phase,
    uri: r.uri,
    params: r.params,
    ...(r.progress ? { progress: r.progress } : {}),
    ...(r.figures ? { figures: r.figures } : {}),
    ...(r.postcopy ? { postcopy: r.postcopy } : {}),
    ...(r.errorCode ? { errorCode: r.errorCode } : {}),
    ...(r.reason ? { reason: r.reason } : {}),
    startedAt: r.startedAt.toISOString(),
    phaseChangedAt: r.phaseChangedAt.toISOString(),
    ...(r.endedAt ? { endedAt: r.endedAt.toISOString() } : {}),
  };
}
