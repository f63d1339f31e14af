import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** shared/vectors: the nearest ancestor with one (beside the repository root or its worktree's dir). */
function vectorsDir(): string {
  for (let dir = import.meta.dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'shared', 'vectors'))) return join(dir, 'shared', 'vectors');
  }
  throw new Error('no shared/vectors above this checkout');
}

/** Bytes of a vector file, path relative to shared/vectors. */
export function vector(path: string): Buffer {
  return readFileSync(join(vectorsDir(), path));
}

/** The sevctl launch-measurement inputs (real trimmed OVMF, QEMU-built VMSAs, fake kernel/initrd). */
export const SEVCTL = {
  ovmf: (): Buffer => vector('sev/kat/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9'),
  vmsa0: (): Buffer => vector('sev/kat/sevctl/vmsa0.bin'),
  vmsa1: (): Buffer => vector('sev/kat/sevctl/vmsa1.bin'),
  tik: (): Buffer => vector('sev/kat/sevctl/measurement/tik1.bin'),
  kernel: (): Buffer => vector('sev/kat/sevctl/measurement/vmlinuz-fake'),
  initrd: (): Buffer => vector('sev/kat/sevctl/measurement/initrd-fake'),
  cmdline: 'foo bar baz fake kernel=cmdline',
} as const;
