import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '@ccm/config';
import { DEFAULT_RUN_ROOT, hostRunDir, type HostAgentConfig } from '../config.js';
import { EmulatedSecureProcessor, openEmulator } from './emulated-secure-processor.js';
import { HardwareSecureProcessor } from './hardware-secure-processor.js';
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
 * Opens the secure processor CCM_SEV asks for: `hardware` (or `auto` where /dev/sev exists and the
 * driver is QEMU) probes the firmware through QEMU; `emulated` (or `auto` elsewhere) opens the software
 * secure processor, creating it on first use; `off` gives none.
 */
export async function openSecureProcessor(config: HostAgentConfig): Promise<SecureProcessor | undefined> {
  const mode = config.CCM_SEV;
  if (mode === 'off') return undefined;
  const firmware = config.CCM_HYPERVISOR === 'qemu' && existsSync(SEV_DEVICE);
  if (mode === 'hardware' || (mode === 'auto' && firmware)) {
    if (!config.CCM_SEV_AMD_CERT_FILE) {
      throw new ConfigError('host-agent', [
        'CCM_SEV_AMD_CERT_FILE: required with SEV hardware (the ASK ‖ ARK of the product line, as AMD publishes it)',
      ]);
    }
    return HardwareSecureProcessor.open({
      binary: config.CCM_QEMU_BIN,
      amdCertFile: config.CCM_SEV_AMD_CERT_FILE,
    });
  }
  return new EmulatedSecureProcessor(await openEmulator(sevStateDir(config), sevLabDir(config)));
}
