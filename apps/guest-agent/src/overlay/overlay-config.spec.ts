import { describe, expect, it } from 'vitest';
import { overlayEndpoint } from './overlay-config.js';

describe('the guest overlay endpoint', () => {
  const base = {
    CCM_GUEST_OVERLAY_DRIVER: 'wireguard' as const,
    CCM_GUEST_OVERLAY_PORT: 51820,
    CCM_GUEST_STREAM_HOST: '10.77.120.100',
  };

  it('is CCM_GUEST_OVERLAY_ENDPOINT when set', () => {
    expect(overlayEndpoint({ ...base, CCM_GUEST_OVERLAY_ENDPOINT: '10.0.0.9:4000' })).toBe('10.0.0.9:4000');
  });

  it("defaults to the guest's underlay address (its stream host) and the overlay port", () => {
    expect(overlayEndpoint(base)).toBe('10.77.120.100:51820');
  });

  it('is none on loopback, on a host name, or with the sim driver', () => {
    expect(overlayEndpoint({ ...base, CCM_GUEST_STREAM_HOST: '127.0.0.1' })).toBeUndefined();
    expect(overlayEndpoint({ ...base, CCM_GUEST_STREAM_HOST: 'guest-a' })).toBeUndefined();
    expect(overlayEndpoint({ ...base, CCM_GUEST_OVERLAY_DRIVER: 'sim' })).toBeUndefined();
  });
});
