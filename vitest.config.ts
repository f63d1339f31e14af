import { resolve } from 'node:path';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

const root = import.meta.dirname;

/**
 * One runner for the whole workspace. SWC compiles the TypeScript so Nest's decorator metadata exists
 * (esbuild does not emit it). Unit specs (*.spec.ts), integration specs against a real nats-server and
 * Postgres (*.int-spec.ts) and end-to-end specs (test/e2e/*.e2e-spec.ts) all run here.
 */
export default defineConfig({
  plugins: [
    swc.vite({
      jsc: {
        parser: { syntax: 'typescript', decorators: true },
        target: 'es2022',
        keepClassNames: true,
        transform: { legacyDecorator: true, decoratorMetadata: true },
      },
    }),
  ],
  resolve: {
    alias: [
      { find: /^@ccm\/([\w-]+)\/internal$/, replacement: resolve(root, 'libs/$1/src/internal.ts') },
      { find: /^@ccm\/([\w-]+)$/, replacement: resolve(root, 'libs/$1/src/index.ts') },
    ],
  },
  test: {
    include: [
      'apps/**/*.{spec,int-spec}.ts',
      'libs/**/*.{spec,int-spec}.ts',
      'tools/**/*.{spec,int-spec}.ts',
      'test/**/*.e2e-spec.ts',
    ],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default', './tools/test/summary-reporter.ts'],
    globalSetup: ['./tools/test/global-setup.ts'],
  },
});
