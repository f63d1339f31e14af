import { type Envelope } from '@ccm/contracts';
import { type TrustStore } from '@ccm/keys';

/** One message of CCM_EVENTS as stored: its stream sequence, subject and bytes. */
export interface StoredEvent {
  streamSeq: number;
  subject: string;
  data: Uint8Array | string;
  /** When the stream stored it (ISO), if known. */
  storedAt?: string;
}

/** What can be wrong with a record; each finding names the event and says why. */
export type FindingKind =
  | 'malformed'
  | 'signature'
  | 'unauthorized-publisher'
  | 'unchained'
  | 'chain-link'
  | 'genesis'
  | 'missing'
  | 'aged-out'
  | 'duplicate'
  | 'fork'
  | 'reordered'
  | 'cross-link';

export interface Finding {
  kind: FindingKind;
  reason: string;
  streamSeq?: number;
  eventId?: string;
  subject?: string;
  chainId?: string;
  chainSeq?: number;
}

/** One event as the audit saw it: the envelope exactly as stored, its hash, and whether it passed. */
export interface AuditedEvent {
  streamSeq: number;
  subject: string;
  storedAt?: string;
  env: Envelope;
  hash: string;
  /** Signature valid, signer trusted and entitled to the subject. */
  signatureOk: boolean;
  /** Its chain link to the previous event (or genesis) holds. */
  linkOk: boolean;
}

export interface ChainSummary {
  chainId: string;
  publisher: string;
  events: number;
  firstSeq: number;
  lastSeq: number;
  head: string;
}

/** The verdict on one migration's record. */
export type Verdict = 'intact' | 'open' | 'incomplete' | 'broken';

export interface MigrationRecord {
  migrationId: string;
  /** Verified events in stream order (those that failed their signature are in `findings` only). */
  events: AuditedEvent[];
  chains: ChainSummary[];
  findings: Finding[];
  /** The coordinator's chain ends with `finished` or `rejected`. */
  ended: boolean;
  /**
   * `intact`: ended, nothing wrong; `open`: nothing wrong but not ended (still running, or its end is
   * missing); `incomplete`: only aged-out gaps; `broken`: anything else.
   */
  verdict: Verdict;
}

export interface AuditOptions {
  trust: TrustStore;
  /** The stream's first sequence still held: above 1, older messages are gone (retention). */
  streamFirstSeq?: number;
}
