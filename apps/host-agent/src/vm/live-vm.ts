import { type VmPhase } from '@ccm/contracts';
import { type VmProcess } from '../drivers/vm-process.js';
import { type AgentSevLaunch, type SevContextLoss } from '../sev/secure-processor.js';
import { type VmRecord } from '../store/records.js';
import { StateCell } from '../store/state-cell.js';

/**
 * A VM with a process on this host, as the agent holds it in memory. Its record changes only through
 * {@link LiveVm.set} (a {@link StateCell}: copy, stamp, ordered write).
 */
export class LiveVm {
  proc?: VmProcess;
  /** The agent-side SEV launch, for QEMU on a host without SEV firmware. */
  agentSev?: AgentSevLaunch;
  /** Why {@link agentSev} is missing after a restart (its sealed context was not there or was refused). */
  agentSevLost?: SevContextLoss;
  /** Set before the agent ends the process itself: the final phase and reason to record. */
  expectedExit?: { phase: VmPhase; reason: string };
  /** Why the process is about to end, learnt from QMP (e.g. the guest shut down). */
  exitHint?: string;
  private readonly cell: StateCell<VmRecord>;
  private markEnded!: () => void;
  /** Resolves once the process ended and its final phase was recorded. */
  readonly ended = new Promise<void>((r) => (this.markEnded = r));

  constructor(
    record: VmRecord,
    /** Last written state; undefined when this is a new VM (or a reused id): its history restarts. */
    persisted: VmRecord | undefined,
    save: (next: VmRecord, prev: VmRecord | undefined) => Promise<void>,
  ) {
    this.cell = new StateCell(record, persisted, (next, prev) => save(next, prev));
  }

  get record(): VmRecord {
    return this.cell.current;
  }

  get vmId(): string {
    return this.cell.current.vmId;
  }

  /** Applies `patch` (stamping a phase change) and queues the write; resolves once it is written. */
  set(patch: Partial<Omit<VmRecord, 'vmId' | 'phaseChangedAt' | 'createdAt'>>): Promise<void> {
    return this.cell.update(patch);
  }

  /** Writes the current state (once, in order with earlier writes). */
  flush(): Promise<void> {
    return this.cell.flush();
  }

  /** Called once the end of the process is recorded. */
  settleEnded(): void {
    this.markEnded();
  }
}
