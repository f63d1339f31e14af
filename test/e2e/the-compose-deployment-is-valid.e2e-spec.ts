import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPERATOR, SERVICES } from '@ccm/contracts';
import { generateKeys } from '@ccm/keys';
import { ensureNatsServer } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../tools/stack/service-process.js';

/** `docker compose` (v2 plugin) where present, else Debian's `docker-compose`; undefined if neither. */
function composeCommand(): string[] | undefined {
  if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0)
    return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return ['docker-compose'];
  return undefined;
}

const compose = composeCommand();
if (!compose)
  console.warn(
    'SKIP compose validation: neither `docker compose` nor `docker-compose` is installed (tools/system-packages.txt lists docker-compose)',
  );

describe('the docker compose deployment', () => {
  describe.skipIf(!compose)('docker-compose.yml', () => {
    it('passes `compose config` and defines NATS, Postgres, the key generator and every service', () => {
      const [cmd, ...args] = compose!;
      const services = execFileSync(cmd, [...args, 'config', '--services'], {
        cwd: REPO_ROOT,
        encoding: 'utf8',
      })
        .trim()
        .split('\n');
      expect(services.sort()).toEqual(
        ['keys', 'nats', 'postgres', ...SERVICES.filter((s) => s !== 'guest-agent')].sort(),
      );
    });
  });

  it('its nats.conf with generated keys is accepted by nats-server', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-compose-'));
    try {
      await mkdir(join(dir, 'keys'));
      await generateKeys(join(dir, 'keys'), { signers: [...SERVICES, OPERATOR] });
      const conf = (await readFile(join(REPO_ROOT, 'deploy/nats/nats.conf'), 'utf8')).replace(
        'store_dir: /data',
        `store_dir: ${join(dir, 'js')}`,
      );
      await writeFile(join(dir, 'nats.conf'), conf);
      const r = spawnSync(ensureNatsServer(), ['-t', '-c', join(dir, 'nats.conf')], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toMatch(/configuration file .* is valid/);
      expect(r.status).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
