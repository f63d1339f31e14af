import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabAuthority, type CreateLabOptions } from '../lab/lab-authority.js';
import {
  SoftwareSecureProcessor,
  type CreateProcessorOptions,
  type OpenProcessorOptions,
} from '../processor.js';

/**
 * A test bed in a temp directory: one lab (2048-bit RSA unless told otherwise, to keep key generation
 * fast) and any number of emulated hosts endorsed by it. Create one per spec file in `beforeAll`.
 */
export interface TestBed {
  readonly root: string;
  readonly lab: LabAuthority;
  /** Creates (or reopens) the host named `name`, INIT'ed unless `init` is false. */
  host(
    name: string,
    options?: Partial<CreateProcessorOptions> & OpenProcessorOptions & { readonly init?: boolean },
  ): SoftwareSecureProcessor;
  /** A directory path under the bed for `name` (not created). */
  dir(name: string): string;
  cleanup(): void;
}

export async function createTestBed(labOptions: CreateLabOptions = { rsaBits: 2048 }): Promise<TestBed> {
  const root = mkdtempSync(join(tmpdir(), 'ccm-sev-emulator-'));
  const lab = await LabAuthority.create(join(root, 'lab'), labOptions);
  const dir = (name: string): string => join(root, name);
  return {
    root,
    lab,
    dir,
    host(name, options = {}) {
      const sp = SoftwareSecureProcessor.openOrCreate(dir(name), { lab, ...options });
      if (options.init !== false) sp.init();
      return sp;
    },
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
