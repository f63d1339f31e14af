import { z } from 'zod';

/**
 * The guest side of the overlay (docs/network-overlay.md): `sim` keeps the interface as an in-memory
 * peer table (no packets); `wireguard` makes a real WireGuard interface through libs/wireguard
 * (kernel WireGuard where the module loads, wireguard-go otherwise) keyed with the guest's identity key.
 */
export const overlayConfigFields = {
  CCM_GUEST_OVERLAY_DRIVER: z.enum(['sim', 'wireguard']).default('sim'),
  /** The interface's name (wireguard-go: unique on the machine, its UAPI socket is shared). */
  CCM_GUEST_OVERLAY_INTERFACE: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,15}$/, 'an interface name of 1-15 letters, digits, "_", "." or "-"')
    .default('ccm-wg0'),
  CCM_GUEST_OVERLAY_PORT: z.coerce.number().int().min(1).max(65535).default(51820),
  /** `auto`: kernel WireGuard where the module loads, wireguard-go otherwise. */
  CCM_GUEST_OVERLAY_WG_MODE: z.enum(['auto', 'kernel', 'userspace']).default('auto'),
  /** The guest's underlay endpoint a.b.c.d:port, reported by `overlay-up` (routing only, not attested). */
  CCM_GUEST_OVERLAY_ENDPOINT: z
    .string()
    .regex(/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/, 'a.b.c.d:port')
    .optional(),
};

/**
 * Where the other peers reach this guest's WireGuard interface: CCM_GUEST_OVERLAY_ENDPOINT when set;
 * else, with the `wireguard` driver, the guest's underlay address (CCM_GUEST_STREAM_HOST, which the
 * host-agent hands each VM in its fw_cfg blob) and CCM_GUEST_OVERLAY_PORT, so one app disk serves
 * every VM; else none (loopback is no endpoint another guest can reach).
 */
export function overlayEndpoint(c: {
  CCM_GUEST_OVERLAY_DRIVER: 'sim' | 'wireguard';
  CCM_GUEST_OVERLAY_ENDPOINT?: string | undefined;
  CCM_GUEST_OVERLAY_PORT: number;
  CCM_GUEST_STREAM_HOST: string;
}): string | undefined {
  if (c.CCM_GUEST_OVERLAY_ENDPOINT) return c.CCM_GUEST_OVERLAY_ENDPOINT;
  const host = c.CCM_GUEST_STREAM_HOST;
  if (c.CCM_GUEST_OVERLAY_DRIVER !== 'wireguard' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) return undefined;
  if (host.startsWith('127.') || host === '0.0.0.0') return undefined;
  return `${host}:${c.CCM_GUEST_OVERLAY_PORT}`;
}
