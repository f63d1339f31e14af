#!/usr/bin/env node
// Compiles apps/, libs/ and tools/ TypeScript to dist/ with SWC (decorator metadata on, @ccm/* aliases
// rewritten to relative paths) so services start as plain `node dist/apps/<app>/src/main.js`.
// Type checking is separate: `npm run typecheck`.
import { transformFile } from '@swc/core';
import { mkdir, readdir, writeFile, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist');
const roots = ['apps', 'libs', 'tools'];
const skip = /(\.spec|\.int-spec|\.e2e-spec|\.d)\.ts$/;

async function* walk(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules' || entry.name === '__fixtures__') continue;
      yield* walk(full);
    } else if (entry.name.endsWith('.ts') && !skip.test(entry.name)) {
      yield full;
    }
  }
}

/** Explicit alias per lib: SWC's wildcard matching does not tell `@ccm/x` from `@ccm/x/internal`. */
async function libPaths() {
  const paths = {};
  for (const lib of await readdir(join(root, 'libs'))) {
    paths[`@ccm/${lib}`] = [`libs/${lib}/src/index.ts`];
    if (await stat(join(root, 'libs', lib, 'src', 'internal.ts')).catch(() => null)) {
      paths[`@ccm/${lib}/internal`] = [`libs/${lib}/src/internal.ts`];
    }
  }
  return paths;
}

const swcOptions = {
  sourceMaps: true,
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    target: 'es2022',
    keepClassNames: true,
    transform: { legacyDecorator: true, decoratorMetadata: true },
    baseUrl: root,
    paths: await libPaths(),
  },
  module: { type: 'es6', resolveFully: true },
};

const started = Date.now();
let count = 0;
for (const top of roots) {
  const dir = join(root, top);
  if (!(await stat(dir).catch(() => null))) continue;
  for await (const file of walk(dir)) {
    const out = join(outDir, relative(root, file)).replace(/\.ts$/, '.js');
    const result = await transformFile(file, {
      ...swcOptions,
      filename: file,
      sourceFileName: relative(dirname(out), file),
    });
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${result.code}\n//# sourceMappingURL=${out.split('/').pop()}.map\n`);
    if (result.map) await writeFile(`${out}.map`, result.map);
    count++;
  }
}
await writeFile(join(outDir, 'package.json'), '{"type":"module"}\n');
console.log(`build: ${count} files compiled to dist/ in ${Date.now() - started} ms`);
