#!/usr/bin/env node
/**
 * Builds (or finds in the cache) the tiny test guest and prints where it is and how long it took.
 *   node dist/tools/guest-image/main.js [--force] [--cache-dir DIR] [--json]
 */
import { parseArgs } from 'node:util';
import { ensureGuestImage, GuestImageBuildError, guestKernelCommandLine } from './guest-image.js';

const USAGE = 'usage: node dist/tools/guest-image/main.js [--force] [--cache-dir DIR] [--json]';

async function main(): Promise<number> {
  let values: { force?: boolean; 'cache-dir'?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
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
  try {
    const image = await ensureGuestImage({
      force: values.force,
      cacheDir: values['cache-dir'],
      log: values.json ? undefined : (m) => process.stderr.write(`${m}\n`),
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(image, null, 2)}\n`);
      return 0;
    }
    const m = image.manifest;
    const mb = (n: number): string => (n / 1e6).toFixed(1);
    process.stdout.write(
      [
        `guest image ${image.key} ${image.cached ? 'found in cache' : 'built'} in ${image.elapsedMs} ms`,
        `  kernel  ${image.kernel} (${mb(m.vmlinuxBytes)} MB, ${m.kernelPackage} ${m.kernelVersion}, was ${m.kernelCompression})`,
        `  initrd  ${image.initrd} (${mb(m.initrdBytes)} MB, busybox-static ${m.busyboxVersion})`,
        `  append  "${guestKernelCommandLine()}"`,
        `  build stages (ms): ${Object.entries(m.stageMs)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      ].join('\n') + '\n',
    );
    return 0;
  } catch (err) {
    const suggestion =
      err instanceof GuestImageBuildError && err.suggestion ? `\nhint: ${err.suggestion}` : '';
    process.stderr.write(`guest-image: ${(err as Error).message}${suggestion}\n`);
    return 1;
  }
}

process.exitCode = await main();
