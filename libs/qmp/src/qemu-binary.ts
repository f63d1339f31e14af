import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Environment variable naming the QEMU binary (an operator's override of the choice below). */
export const QEMU_BIN_ENV = 'CCM_QEMU_BIN';
/** The system QEMU's name on PATH (the fallback). */
export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';
/** CCM's wrapper that runs trixie's QEMU 10 from the cached rootfs, relative to the repository root. */
export const TRIXIE_QEMU_WRAPPER = join('tools', 'trixie', 'qemu-system-x86_64');

/** Where the chosen QEMU came from. */
export type QemuBinarySource = 'env' | 'ccm-trixie' | 'path';

export interface QemuBinaryChoice {
  binary: string;
  source: QemuBinarySource;
  /** Why, for logs and the platform report. */
  reason: string;
  /** The trixie rootfs the wrapper runs QEMU from (source `ccm-trixie`). */
  rootfs?: string;
}

/** The repository root above this module (sources or dist/), found by the trixie wrapper's presence. */
function repoWrapper(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, TRIXIE_QEMU_WRAPPER);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

/** The trixie rootfs path when it is built (`rootfs.sh --check`), else undefined. Nothing is built here. */
function builtRootfs(wrapper: string): string | undefined {
  const r = spawnSync('bash', [join(dirname(wrapper), 'rootfs.sh'), '--check'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  const root = r.stdout?.trim();
  return r.status === 0 && root ? root : undefined;
}

let trixie: { wrapper: string; rootfs: string } | null | undefined;

/**
 * CCM's trixie QEMU when this checkout has the wrapper and its rootfs is built (looked up once per
 * process), else undefined.
 */
export function trixieQemu(): { wrapper: string; rootfs: string } | undefined {
  if (trixie === undefined) {
    const wrapper = repoWrapper();
    const rootfs = wrapper ? builtRootfs(wrapper) : undefined;
    trixie = wrapper && rootfs ? { wrapper, rootfs } : null;
  }
  return trixie ?? undefined;
}

/**
 * The QEMU CCM runs, in this order: `$CCM_QEMU_BIN` (or `explicit`) when set; CCM's trixie QEMU 10
 * (tools/trixie/qemu-system-x86_64) when its rootfs is built (`bash tools/dev.sh setup` builds it);
 * else `qemu-system-x86_64` on PATH. Debian 12's QEMU 7.2 corrupts TCG guests migrated while they
 * dirty memory fast (docs/data-plane.md), hence the preference.
 */
export function chooseQemuBinary(
  explicit?: string,
  env: Record<string, string | undefined> = process.env,
): QemuBinaryChoice {
  if (explicit) return { binary: explicit, source: 'env', reason: 'given explicitly' };
  const fromEnv = env[QEMU_BIN_ENV]?.trim();
  if (fromEnv) return { binary: fromEnv, source: 'env', reason: `set by ${QEMU_BIN_ENV}` };
  const t = trixieQemu();
  if (t) return { binary: t.wrapper, source: 'ccm-trixie', reason: "CCM's trixie QEMU", rootfs: t.rootfs };
  return {
    binary: DEFAULT_QEMU_BINARY,
    source: 'path',
    reason: repoWrapper()
      ? "the system QEMU: CCM's trixie rootfs is not built (bash tools/dev.sh setup)"
      : 'the system QEMU on PATH',
  };
}

/** Parses `QEMU emulator version 10.0.13 (Debian …)` into `10.0.13`. */
export function parseQemuVersion(text: string): string | undefined {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1];
}

/** Runs `<binary> --version`; undefined when it does not run or says no version. */
export function qemuVersion(binary: string): { version: string; banner: string } | undefined {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 15_000 });
  const banner = (r.stdout ?? '').split('\n')[0]?.trim() ?? '';
  const version = r.status === 0 ? parseQemuVersion(banner) : undefined;
  return version ? { version, banner } : undefined;
}

/** SeaBIOS as the chosen QEMU boots it: trixie's from the rootfs when that is built, else Debian's. */
export function defaultSeabios(): string {
  const t = trixieQemu();
  return t ? join(t.rootfs, 'usr', 'share', 'seabios', 'bios-256k.bin') : '/usr/share/seabios/bios-256k.bin';
}
