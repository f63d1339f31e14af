import { CcmError, ErrorCodes } from '@ccm/contracts';

/** Envelope ids one receiver remembers at most; the oldest are forgotten first. */
export const MAX_REMEMBERED_ENVELOPES = 100_000;

/**
 * The envelope ids a receiver has taken, to refuse a replay. An id is remembered for `windowMs`
 * (requests: long enough that a replay after it is refused as stale instead) and at most
 * {@link MAX_REMEMBERED_ENVELOPES} of them. `tag` tells deliveries of one message apart from a replay:
 * a JetStream message redelivered keeps its stream sequence, a replay published again gets a new one.
 */
export class SeenEnvelopes {
  private readonly seen = new Map<string, { until: number; tag?: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly max = MAX_REMEMBERED_ENVELOPES,
  ) {}

  /** Records `id`; throws REPLAYED (not retryable) when it was taken before under another tag. */
  admit(id: string, tag?: number, now = Date.now()): void {
    const prior = this.seen.get(id);
    if (prior && prior.until >= now) {
      if (tag !== undefined && prior.tag === tag) return;
      throw new CcmError(ErrorCodes.Replayed, `envelope ${id} was already received: a replay is refused`, {
        retryable: false,
        details: { id, ...(prior.tag !== undefined ? { firstStreamSeq: prior.tag } : {}) },
      });
    }
    this.seen.delete(id);
    this.seen.set(id, { until: now + this.windowMs, ...(tag !== undefined ? { tag } : {}) });
    for (const [k, v] of this.seen) {
      if (this.seen.size <= this.max && v.until >= now) break;
      this.seen.delete(k);
    }
  }
}
