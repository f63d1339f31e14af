import { createHash } from 'node:crypto';

/**
 * The name of the tap the host-agent makes for NIC `index` of `vmId`: the same on every host (a
 * migration destination gets its own tap of that name on its own bridge), at most 15 bytes, no
 * character of the id.
 */
export function tapName(vmId: string, index: number): string {
  return `ccm${createHash('sha256').update(vmId).digest('hex').slice(0, 10)}${index}`;
}
