import { DEFAULT_EVENTS_RETENTION, type EventsRetention } from '@ccm/contracts';
import { z } from 'zod';
import { envInt, loadConfig } from './config.js';

const limit = (fallback: number) => envInt(0, Number.MAX_SAFE_INTEGER).default(fallback);

/**
 * CCM_EVENTS' limits as the bootstrap identity applies them (tools/streams, the stack launcher):
 * CCM_EVENTS_MAX_AGE_MS, CCM_EVENTS_MAX_BYTES, CCM_EVENTS_MAX_MSGS (0 = no limit) and
 * CCM_EVENTS_DISCARD (`old` drops the oldest events, `new` refuses new ones). Unset means
 * {@link DEFAULT_EVENTS_RETENTION}. A stream with no limit at all is refused: the log would grow
 * until the disk is full, and then every service stalls at once.
 */
export const eventsRetentionSchema = z
  .object({
    CCM_EVENTS_MAX_AGE_MS: limit(DEFAULT_EVENTS_RETENTION.maxAgeMs),
    CCM_EVENTS_MAX_BYTES: limit(DEFAULT_EVENTS_RETENTION.maxBytes),
    CCM_EVENTS_MAX_MSGS: limit(DEFAULT_EVENTS_RETENTION.maxMsgs),
    CCM_EVENTS_DISCARD: z.enum(['old', 'new']).default(DEFAULT_EVENTS_RETENTION.discard),
  })
  .refine((e) => e.CCM_EVENTS_MAX_AGE_MS + e.CCM_EVENTS_MAX_BYTES + e.CCM_EVENTS_MAX_MSGS > 0, {
    message: 'set at least one of CCM_EVENTS_MAX_AGE_MS, CCM_EVENTS_MAX_BYTES, CCM_EVENTS_MAX_MSGS above 0',
  })
  .transform((e): EventsRetention => ({
    maxAgeMs: e.CCM_EVENTS_MAX_AGE_MS,
    maxBytes: e.CCM_EVENTS_MAX_BYTES,
    maxMsgs: e.CCM_EVENTS_MAX_MSGS,
    discard: e.CCM_EVENTS_DISCARD,
  }));

/** Reads CCM_EVENTS' retention from `env`; throws a ConfigError naming every bad variable. */
export function eventsRetentionFromEnv(env: Record<string, string | undefined>): EventsRetention {
  return loadConfig('ccm-streams', eventsRetentionSchema, env);
}
