import nx from '@nx/eslint-plugin';
import importX from 'eslint-plugin-import-x';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

/**
 * Only an app imports its own sources: tests, tools and libs reach an app through a lib (shared code,
 * test helpers in libs/testing) or by starting its built process (startServiceProcess).
 */
const APP_SOURCES = '(^|/)apps/[^/]+/src(/|$)';
const appSourcesMessage =
  'Only an app imports its own sources: move what is shared into a lib (test helpers: libs/testing), or start the built app as a process (startServiceProcess).';
const appSourcesBan = { regex: APP_SOURCES, message: appSourcesMessage };

const frameworkBan = (why) => ({
  patterns: [
    { group: ['@nestjs/*'], message: `${why}: no Nest here.` },
    { group: ['typeorm', 'typeorm/*'], message: `${why}: no ORM here.` },
    { group: ['@nats-io/*'], message: `${why}: no NATS client here.` },
    appSourcesBan,
  ],
});

const depConstraints = [
  { sourceTag: 'type:app', notDependOnLibsWithTags: ['type:app'] },
  {
    sourceTag: 'type:contracts',
    onlyDependOnLibsWithTags: ['type:contracts'],
    bannedExternalImports: ['@nestjs/*', 'typeorm', '@nats-io/*'],
  },
  {
    sourceTag: 'type:pure',
    onlyDependOnLibsWithTags: ['type:contracts', 'type:pure'],
    bannedExternalImports: ['@nestjs/*', 'typeorm', '@nats-io/*'],
  },
  { sourceTag: 'type:adapter', onlyDependOnLibsWithTags: [] },
  { sourceTag: 'type:util', onlyDependOnLibsWithTags: ['type:contracts'] },
  { sourceTag: 'type:emulator', onlyDependOnLibsWithTags: ['type:pure', 'type:contracts'] },
  {
    sourceTag: 'type:platform',
    onlyDependOnLibsWithTags: ['type:contracts', 'type:util', 'type:platform', 'type:pure'],
  },
  { sourceTag: 'type:testing', notDependOnLibsWithTags: ['type:app'] },
];
const moduleBoundaries = (constraints) => ({
  enforceBuildableLibDependency: false,
  allow: [],
  depConstraints: constraints,
});
/** Specs of every project may use the shared test helpers (pollUntil, launchers); production code may not. */
const specDepConstraints = depConstraints.map((c) =>
  c.onlyDependOnLibsWithTags
    ? { ...c, onlyDependOnLibsWithTags: [...c.onlyDependOnLibsWithTags, 'type:testing'] }
    : c,
);

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'dist/**',
      '.state/**',
      '.nx/**',
      '.tmp*/**',
      'coverage/**',
      '**/*.js',
      '**/*.mjs',
    ],
  },
  ...tseslint.configs.recommendedTypeChecked,
  prettier,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { '@nx': nx, 'import-x': importX },
    rules: {
      '@nx/enforce-module-boundaries': ['error', moduleBoundaries(depConstraints)],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-extraneous-class': 'off',
      '@typescript-eslint/unbound-method': 'off',
      'import-x/no-cycle': 'error',
    },
  },
  {
    // Before the libs' own no-restricted-imports blocks (a later block's options replace these; theirs
    // include appSourcesBan).
    files: ['test/**/*.ts', 'tools/**/*.ts', 'libs/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [appSourcesBan] }],
      // import() of a path built at run time, e.g. `../apps/${name}/src/app.ts`.
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ImportExpression Literal[value=/(^|\\/)apps\\/[^\\/]+\\/src\\//]',
          message: appSourcesMessage,
        },
        {
          selector: 'ImportExpression TemplateElement[value.raw=/(^|\\/)apps\\/$/]',
          message: appSourcesMessage,
        },
        {
          selector: 'ImportExpression TemplateElement[value.raw=/(^|\\/)apps\\/[^\\/]+\\/src\\//]',
          message: appSourcesMessage,
        },
      ],
    },
  },
  {
    files: ['libs/sev/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        frameworkBan('libs/sev is the pure SEV/SNP protocol library (node:crypto only)'),
      ],
    },
  },
  {
    files: ['libs/contracts/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        frameworkBan('libs/contracts is shared by every end, including tools without Nest or NATS'),
      ],
    },
  },
  {
    files: ['libs/saga/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', frameworkBan('libs/saga is the pure saga engine (no I/O)')] },
  },
  {
    files: ['**/*.spec.ts', '**/*.int-spec.ts', '**/*.e2e-spec.ts', 'test/**/*.ts'],
    rules: {
      '@nx/enforce-module-boundaries': ['error', moduleBoundaries(specDepConstraints)],
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
);
