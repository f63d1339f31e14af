import { basename, dirname } from 'node:path';
import { StateFiles } from './state-files.js';

/**
 * A sealed guest context on disk (see `SoftwareSecureProcessor.exportGuest`): written atomically (a
 * crash leaves the previous context or the new one, never half of one) with mode 0600, since it holds
 * the guest's keys and memory, sealed or not.
 */
export function writeGuestContextFile(path: string, sealed: Uint8Array): void {
  const files = new StateFiles(dirname(path));
  files.ensureDir();
  files.write(basename(path), sealed, { secret: true });
}

/** The sealed context at `path`, or undefined when there is none (SevStateStoreError if unreadable). */
export function readGuestContextFile(path: string): Buffer | undefined {
  const files = new StateFiles(dirname(path));
  const name = basename(path);
  return files.exists(name) ? files.readBytes(name) : undefined;
}
