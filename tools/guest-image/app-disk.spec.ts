import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { appClosure, importSpecifiers, packageClosure, packageOf, shellEnvFile } from './app-disk.js';
import { containerGuestSpec } from './container-image.js';
import { GuestImageBuildError } from './debian.js';

describe('app disk: what an app needs from dist/ and node_modules', () => {
  const dirs: string[] = [];
  afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('finds static imports, re-exports, side-effect and literal dynamic imports', () => {
    const js = [
      'import { a } from "./a.js";',
      "import * as b from '@nats-io/nkeys';",
      'export { c } from "../c/index.js";',
      'import "reflect-metadata";',
      'const m = await import("node:fs");',
      'import { x,\n  y } from "zod/v4";',
      'const s = "import not from here";',
    ].join('\n');
    expect(importSpecifiers(js).sort()).toEqual(
      ['../c/index.js', './a.js', '@nats-io/nkeys', 'node:fs', 'reflect-metadata', 'zod/v4'].sort(),
    );
  });

  it.each([
    ['@nestjs/common/utils', '@nestjs/common'],
    ['zod/v4', 'zod'],
    ['rxjs', 'rxjs'],
    ['./x.js', undefined],
    ['node:crypto', undefined],
  ])('names the package of %s', (spec, pkg) => {
    expect(packageOf(spec)).toBe(pkg);
  });

  it('follows relative imports from the entry and the dependencies of imported packages', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ccm-appdisk-'));
    dirs.push(root);
    await mkdir(join(root, 'dist', 'lib'), { recursive: true });
    await writeFile(join(root, 'dist', 'main.js'), 'import { f } from "./lib/f.js";\nimport "a";\n');
    await writeFile(join(root, 'dist', 'lib', 'f.js'), 'export { g } from "@s/b";\n');
    await writeFile(join(root, 'dist', 'unused.js'), 'import "c";\n');
    const pkg = async (name: string, deps: Record<string, Record<string, string>> = {}): Promise<void> => {
      await mkdir(join(root, 'node_modules', name), { recursive: true });
      await writeFile(join(root, 'node_modules', name, 'package.json'), JSON.stringify({ name, ...deps }));
    };
    await pkg('a', { dependencies: { d: '1' }, peerDependencies: { 'not-installed': '1' } });
    await pkg('@s/b', { optionalDependencies: { e: '1' } });
    await pkg('c');
    await pkg('d');
    await pkg('e');
    const closure = await appClosure(join(root, 'dist', 'main.js'));
    expect(closure.files.map((f) => f.slice(root.length)).sort()).toEqual([
      '/dist/lib/f.js',
      '/dist/main.js',
    ]);
    expect(closure.packages.sort()).toEqual(['@s/b', 'a']);
    expect(await packageClosure(join(root, 'node_modules'), closure.packages)).toEqual([
      '@s/b',
      'a',
      'd',
      'e',
    ]);
    await expect(packageClosure(join(root, 'node_modules'), ['missing'])).rejects.toThrow(
      GuestImageBuildError,
    );
    await expect(appClosure(join(root, 'dist', 'nope.js'))).rejects.toThrow(/npm run build/);
  });

  it('writes an environment file sh sources back verbatim, quotes included', async () => {
    const env = { CCM_NATS_URL: 'nats://10.0.0.1:4222', ODD: `it's "quoted" $HOME` };
    const text = shellEnvFile(env);
    const dir = await mkdtemp(join(tmpdir(), 'ccm-env-'));
    dirs.push(dir);
    await writeFile(join(dir, 'env'), text);
    const r = spawnSync(
      'sh',
      ['-c', `set -a; . "$1"; printf '%s\\n%s' "$CCM_NATS_URL" "$ODD"`, 'sh', join(dir, 'env')],
      {
        encoding: 'utf8',
        env: {},
      },
    );
    expect(r.stdout).toBe(`${env.CCM_NATS_URL}\n${env.ODD}`);
    expect(() => shellEnvFile({ 'BAD NAME': 'x' })).toThrow(GuestImageBuildError);
  });

  it('attaches the app disk read-only as the second virtio disk', () => {
    const spec = containerGuestSpec(
      { kernel: 'k', initrd: 'i', rootDisk: '/r.ext4' },
      { appDisk: '/a.ext4' },
    );
    expect(spec.extraArgs).toEqual([
      '-drive',
      'file=/r.ext4,if=virtio,format=raw,readonly=on',
      '-no-reboot',
      '-drive',
      'file=/a.ext4,if=virtio,format=raw,readonly=on',
    ]);
  });
});
