import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICES } from '@ccm/contracts';
import { loadIdentity } from '@ccm/keys';
import { ensureNatsServer, REPO_ROOT } from '@ccm/testing';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

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
    it('passes `compose config` and defines NATS, Postgres, the key generator, the streams job and every service', () => {
      const [cmd, ...args] = compose!;
      const services = execFileSync(cmd, [...args, 'config', '--services'], {
        cwd: REPO_ROOT,
        encoding: 'utf8',
      })
        .trim()
        .split('\n');
      expect(services.sort()).toEqual(
        ['keys', 'streams', 'nats', 'postgres', ...SERVICES.filter((s) => s !== 'guest-agent')].sort(),
      );
    });

    it('mounts the keys volume (with the operator key) only in the key job; each process gets only its own', () => {
      const [cmd, ...args] = compose!;
      const config = parse(execFileSync(cmd, [...args, 'config'], { cwd: REPO_ROOT, encoding: 'utf8' })) as {
        services: Record<string, { volumes?: Array<string | { source?: string; target?: string }> }>;
      };
      const mounts = (svc: string): string[] =>
        (config.services[svc]?.volumes ?? []).map((v) =>
          typeof v === 'string' ? v.split(':').slice(0, 2).join(':') : `${v.source}:${v.target}`,
        );
      for (const [svc] of Object.entries(config.services)) {
        if (svc !== 'keys') expect(mounts(svc).filter((m) => m.startsWith('keys:'))).toEqual([]);
      }
      for (const svc of SERVICES.filter((s) => s !== 'guest-agent'))
        expect(mounts(svc)).toEqual([`keys-${svc}:/keys`]);
      expect(mounts('nats')).toContain('keys-nats:/etc/nats/keys');
      expect(mounts('keys')).toContain('keys:/keys');
      // Only the streams job holds the bootstrap identity, the one allowed to create or change streams.
      expect(mounts('streams')).toEqual(['keys-bootstrap:/keys']);
      for (const svc of SERVICES) expect(mounts(svc)).not.toContain('keys-bootstrap:/keys');
    });
  });

  it('its nats.conf with generated keys is accepted by nats-server', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-compose-'));
    try {
      // What the compose `keys` job runs: ccm-keys with a per-process split; nats gets only its include.
      const r0 = spawnSync(
        process.execPath,
        [
          join(REPO_ROOT, 'dist/tools/keys/main.js'),
          '--out',
          join(dir, 'all'),
          '--host-id',
          'host-1',
          '--deploy-dir',
          join(dir, 'deploy'),
        ],
        { encoding: 'utf8' },
      );
      expect(r0.stderr).toBe('');
      expect(r0.status).toBe(0);
      await symlink(join(dir, 'deploy', 'nats'), join(dir, 'keys'));
      const keyBroker = await loadIdentity(join(dir, 'deploy', 'key-broker'), 'key-broker');
      expect(keyBroker.keyId).toBe((await loadIdentity(join(dir, 'all'), 'key-broker')).keyId);
      // The host-agent's volume is its host's pinned identity, whose NATS user sees only that host.
      const pinned = await loadIdentity(join(dir, 'deploy', 'host-agent@host-1'), 'host-agent', 'host-1');
      const auth = await readFile(join(dir, 'deploy', 'nats', 'nats-auth.conf'), 'utf8');
      expect(auth).toMatch(new RegExp(`${pinned.natsPublicKey}.*"ccm\\.cmd\\.host\\.host-1\\.>"`));
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

  it('ccm-keys refuses an unknown flag with its usage and exit code 2', () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'dist/tools/keys/main.js'), '--outt', '/tmp/x'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/ccm-keys: .*--outt[\s\S]*usage: ccm-keys --out DIR/);
  });
});
