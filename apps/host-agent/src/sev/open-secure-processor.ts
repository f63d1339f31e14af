import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '@ccm/config';
import { DEFAULT_RUN_ROOT, hostRunDir, type HostAgentConfig } from '../config.js';
import { EmulatedSecureProcessor, openEmulator } from './emulated-secure-processor.js';
import { type SecureProcessor } from './secure-processor.js';

/** Where the kernel exposes SEV firmware. */
export const SEV_DEVICE = '/dev/sev';

/** The software secure processor's state dir. */
export function sevStateDir(config: HostAgentConfig): string {
  return config.CCM_SEV_EMULATOR_DIR ?? join(hostRunDir(config), 'sev-emulator');
}

/** The lab CA dir that endorses the emulated chip. */
export function sevLabDir(config: HostAgentConfig): string {
  return config.CCM_SEV_LAB_DIR ?? join(DEFAULT_RUN_ROOT, 'sev-lab');
}

/**
 * Opens the secure processor CCM_SEV asks for: `emulated` opens (creating on first use) the software
 * secure processor; `auto` does the same where there is no SEV firmware; `off` gives none. SEV
 * firmware (/dev/sev) is detected, but driving it through QEMU is not wired: `hardware`, or `auto` on
 * such a host, is refused with a message rather than half-supported.
 */
export async function openSecureProcessor(config: HostAgentConfig): Promise<SecureProcessor | undefined> {
  const mode = config.CCM_SEV;
  if (mode === 'off') return undefined;
  const firmware = config.CCM_HYPERVISOR === 'qemu' && existsSync(SEV_DEVICE);
  if (mode === 'hardware' || (mode === 'auto' && firmware)) {
    throw new ConfigError('host-agent', [
      firmware
        ? `CCM_SEV: SEV firmware (${SEV_DEVICE}) is present, but driving it through QEMU (query-sev-capabilities, sev-guest) is not wired yet: set CCM_SEV=emulated or off`
        : `CCM_SEV: hardware needs SEV firmware (${SEV_DEVICE} is missing)`,
    ]);
  }
  return new EmulatedSecureProcessor(await openEmulator(sevStateDir(config), sevLabDir(config)));
}
