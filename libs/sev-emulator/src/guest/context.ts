import type {
  SevLaunchDigest,
  SevMeasurementBlob,
  SevTransportKeys,
  SnpGuestPolicy,
  SnpLaunchDigest,
  TcbVersion,
} from '@ccm/sev';
import type { SevGuestStateName } from '../status.js';
import type { GuestMemory } from './memory.js';
import type { MemoryEncryptionKey } from './memory-cipher.js';

/** Which kind of guest a context runs: SEV, SEV-ES (encrypted register state) or SEV-SNP. */
export type SevGuestKind = 'sev' | 'sev-es' | 'snp';

/** SNP-only parts of a guest context. */
export interface SnpGuestContext {
  readonly policyValue: bigint;
  readonly policy: SnpGuestPolicy;
  readonly digest: SnpLaunchDigest;
  /** HOST_DATA from SNP_LAUNCH_FINISH. */
  hostData: Buffer;
  /** REPORT_ID: random per guest, fixed at launch. */
  readonly reportId: Buffer;
  /** CurrentTcb when the guest was launched. */
  readonly launchTcb: TcbVersion;
}

/** The transport keys and replay state of a SEND or RECEIVE in progress. */
export interface TransportState {
  readonly keys: SevTransportKeys;
  packets: number;
  /** IVs accepted so far (hex): a packet whose IV was already accepted is a replay. */
  readonly seenIvs: Set<string>;
}

/**
 * GCTX, the firmware's per-guest context. Never leaves the firmware: drivers hold a {@link SevGuest}
 * handle, the guest an in-guest view.
 */
export interface GuestContext {
  readonly handle: number;
  readonly kind: SevGuestKind;
  state: SevGuestStateName;
  /** SEV/SEV-ES policy (32 bits); for SNP the low 32 bits are not meaningful, see `snp`. */
  readonly policy: number;
  asid: number | undefined;
  readonly vek: MemoryEncryptionKey;
  readonly memory: GuestMemory;
  /** Encrypted vCPU state (SEV-ES/SNP VMSAs), by vCPU index. */
  readonly vmsas: Buffer[];
  /** TEK/TIK of the launch (LAUNCH_START) for MEASURE and LAUNCH_SECRET. */
  launchKeys?: SevTransportKeys;
  launchDigest?: SevLaunchDigest;
  measurement?: SevMeasurementBlob;
  /** IVs of LAUNCH_SECRET packets already injected. */
  readonly secretIvs: Set<string>;
  send?: TransportState;
  receive?: TransportState;
  readonly snp?: SnpGuestContext;
}
