import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { listCpio } from './cpio.js';
import { ensureGuestImage } from './guest-image.js';

/**
 * Builds the tiny guest from Debian packages (or takes it from the cache, as every later run does) and
 * checks what came out. Booting it is covered by qemu-tiny-guest.int-spec.ts.
 */
describe('tiny guest image (Debian kernel + busybox-static + workload)', () => {
  it('builds once, then comes from the cache; the kernel is ELF and the initramfs has init, busybox and the workload', async () => {
    const first = await ensureGuestImage();
    const second = await ensureGuestImage();
    console.log(
      `[guest-image] ${first.key}: ${first.cached ? 'cached' : 'built'} in ${first.elapsedMs} ms ` +
        `(stages ${JSON.stringify(first.manifest.stageMs)}), cache hit in ${second.elapsedMs} ms; ` +
        `${first.manifest.kernelPackage} ${first.manifest.kernelVersion}`,
    );
    expect(second.cached).toBe(true);
    expect(second.dir).toBe(first.dir);
    expect(second.elapsedMs).toBeLessThan(1_000);

    const kernel = await readFile(first.kernel);
    expect(kernel.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(first.manifest.kernelPackage).toMatch(/^linux-image-\d/);

    const entries = new Map(listCpio(await readFile(first.initrd)).map((e) => [e.path, e]));
    expect(entries.get('init')?.mode).toBe(0o100755);
    expect(entries.get('bin/busybox')?.size).toBeGreaterThan(500_000);
    expect(entries.get('bin/ccm-workload')?.size).toBeGreaterThan(100_000); // statically linked
    expect(entries.get('dev/console')?.rdev).toEqual([5, 1]);
  }, 300_000);
});
