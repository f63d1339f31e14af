import { DEFAULT_EVENTS_RETENTION } from '@ccm/contracts';
import { describe, expect, it } from 'vitest';
import { ConfigError } from './config.js';
import { eventsRetentionFromEnv } from './events-retention.js';

describe('CCM_EVENTS retention from the environment', () => {
  it('is the documented default when nothing is set', () => {
    expect(eventsRetentionFromEnv({})).toEqual(DEFAULT_EVENTS_RETENTION);
  });

  it('takes each limit and the discard policy', () => {
    expect(
      eventsRetentionFromEnv({
        CCM_EVENTS_MAX_AGE_MS: '0',
        CCM_EVENTS_MAX_BYTES: '0',
        CCM_EVENTS_MAX_MSGS: '500',
        CCM_EVENTS_DISCARD: 'new',
      }),
    ).toEqual({ maxAgeMs: 0, maxBytes: 0, maxMsgs: 500, discard: 'new' });
  });

  it.each([
    [{ CCM_EVENTS_MAX_MSGS: '-1' }, 'CCM_EVENTS_MAX_MSGS'],
    [{ CCM_EVENTS_MAX_AGE_MS: '1d' }, 'CCM_EVENTS_MAX_AGE_MS'],
    [{ CCM_EVENTS_DISCARD: 'oldest' }, 'CCM_EVENTS_DISCARD'],
    [{ CCM_EVENTS_MAX_AGE_MS: '0', CCM_EVENTS_MAX_BYTES: '0', CCM_EVENTS_MAX_MSGS: '0' }, 'at least one'],
  ])('refuses %j naming the problem', (env, text) => {
    expect(() => eventsRetentionFromEnv(env)).toThrow(ConfigError);
    expect(() => eventsRetentionFromEnv(env)).toThrow(text);
  });
});
