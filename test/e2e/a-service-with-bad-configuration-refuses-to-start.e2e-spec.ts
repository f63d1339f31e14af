import { spawn } from 'node:child_process';
import { type ServiceName } from '@ccm/contracts';
import { builtServiceEntry } from '@ccm/testing';
import { describe, expect, it } from 'vitest';

function run(
  app: ServiceName,
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [builtServiceEntry(app)], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe('configuration is validated at start', () => {
  it('exits with EX_CONFIG (78) and names every bad variable', async () => {
    const { code, stderr } = await run('host-agent', {
      CCM_HTTP_PORT: 'eighty',
      CCM_NATS_URL: 'http://nope',
    });
    expect(code).toBe(78);
    const line = JSON.parse(stderr.trim().split('\n').pop()!) as { level: string; problems: string[] };
    expect(line.level).toBe('fatal');
    expect(line.problems.map((p) => p.split(':')[0]).sort()).toEqual([
      'CCM_HOST_ID',
      'CCM_HTTP_PORT',
      'CCM_KEYS_DIR',
      'CCM_NATS_URL',
    ]);
  });

  it('refuses a service that needs a database without CCM_DATABASE_URL', async () => {
    const { code, stderr } = await run('key-broker', { CCM_KEYS_DIR: '/nonexistent' });
    expect(code).toBe(78);
    expect(stderr).toContain('CCM_DATABASE_URL: required by this service');
  });
});
