import { type PeerSpec } from './device.js';

/** A peer entry as an interface holds it (what `wg show` would list). */
export interface PeerEntry {
  endpoint?: string;
  allowedIps: string[];
}

/**
 * Applies `peers` to an in-memory peer table (public key → entry) with WireGuard's rules, as one
 * `wg set` would: a removed peer goes, omitted fields stay, and an allowed-IPs entry given to one peer
 * is taken from every other peer of the interface. For simulated interfaces.
 */
export function applyPeerSpecs(table: Map<string, PeerEntry>, peers: readonly PeerSpec[]): void {
  for (const p of peers) {
    if (p.remove) {
      table.delete(p.publicKey);
      continue;
    }
    const entry = table.get(p.publicKey) ?? { allowedIps: [] };
    if (p.endpoint !== undefined) entry.endpoint = p.endpoint;
    const given = p.allowedIps;
    if (given !== undefined) {
      entry.allowedIps = [...given];
      for (const [key, other] of table) {
        if (key !== p.publicKey) other.allowedIps = other.allowedIps.filter((c) => !given.includes(c));
      }
    }
    table.set(p.publicKey, entry);
  }
}
