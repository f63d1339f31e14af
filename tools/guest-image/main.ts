#!/usr/bin/env node
/**
 * Builds (or finds in the cache) a test guest and prints where it is and how long it took.
 *   node dist/tools/guest-image/main.js [--flavor tiny|container] [--force] [--cache-dir DIR] [--json]
 * tiny (default): kernel + busybox initramfs + memory-dirtying workload, for QEMU migration tests.
 * container: kernel + tiny initramfs + read-only ext4 root (trixie: nodejs, criu, runc, …), needs root.
 */
import { parseArgs } from 'node:util';
import { containerKernelCommandLine, ensureContainerImage } from './container-image.js';
import { ensureGuestImage, GuestImageBuildError, guestKernelCommandLine } from './guest-image.js';

const USAGE =
  'usage: node dist/tools/guest-image/main.js [--flavor tiny|container] [--force] [--cache-dir DIR] [--json]';
const mb = (n: number): string => (n / 1e6).toFixed(1);
const stages = (s: Record<string, number>): string =>
  Object.entries(s)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

async function main(): Promise<number> {
  let values: { flavor?: string; force?: boolean; 'cache-dir'?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        flavor: { type: 'string', default: 'tiny' },
        force: { type: 'boolean' },
        'cache-dir': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.flavor !== 'tiny' && values.flavor !== 'container') {
    process.stderr.write(`unknown --flavor ${values.flavor}\n${USAGE}\n`);
    return 2;
  }
  const opts = {
    force: values.force,
    cacheDir: values['cache-dir'],
    log: values.json ? undefined : (m: string) => process.stderr.write(`${m}\n`),
  };
  const print = (image: object, lines: string[]): number => {
    process.stdout.write(values.json ? `${JSON.stringify(image, null, 2)}\n` : `${lines.join('\n')}\n`);
    return 0;
  };
  try {
    if (values.flavor === 'container') {
      const image = await ensureContainerImage(opts);
      const m = image.manifest;
      return print(image, [
        `container guest image ${image.key} ${image.cached ? 'found in cache' : 'built'} in ${image.elapsedMs} ms`,
        `  kernel  ${image.kernel} (${mb(m.vmlinuxBytes)} MB, ${m.kernelPackage} ${m.kernelVersion})`,
        `  initrd  ${image.initrd} (${mb(m.initrdBytes)} MB: busybox + ${m.initramfsModules.join(' ')})`,
        `  root    ${image.rootDisk} (${mb(m.rootDiskBytes)} MB ext4 holding ${mb(m.rootfsBytes)} MB, ${m.rootModules} modules)`,
        `  ${m.suite}: ${Object.entries(m.packageVersions)
          .map(([p, v]) => `${p} ${v}`)
          .join(', ')}`,
        `  append  "${containerKernelCommandLine({ runScript: 'SCRIPT' })}"`,
        `  build stages (ms): ${stages(m.stageMs)}`,
      ]);
    }
    const image = await ensureGuestImage(opts);
    const m = image.manifest;
    return print(image, [
      `guest image ${image.key} ${image.cached ? 'found in cache' : 'built'} in ${image.elapsedMs} ms`,
      `  kernel  ${image.kernel} (${mb(m.vmlinuxBytes)} MB, ${m.kernelPackage} ${m.kernelVersion}, was ${m.kernelCompression})`,
      `  initrd  ${image.initrd} (${mb(m.initrdBytes)} MB, busybox-static ${m.busyboxVersion})`,
      `  append  "${guestKernelCommandLine()}"`,
      `  build stages (ms): ${stages(m.stageMs)}`,
    ]);
  } catch (err) {
    const suggestion =
      err instanceof GuestImageBuildError && err.suggestion ? `\nhint: ${err.suggestion}` : '';
    process.stderr.write(`guest-image: ${(err as Error).message}${suggestion}\n`);
    return 1;
  }
}

process.exitCode = await main();
