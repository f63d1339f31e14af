import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrationIdFor } from '@ccm/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ccm } from './support/audit-cli.js';
import { startLauncher } from './support/launcher.js';
import { processesLeft } from './support/process-table.js';

/** Splits a command line on spaces. */
const words = (line: string): string[] => line.split(' ').filter(Boolean);

describe('an operator follows the README against `tools/dev.sh stack --sim`', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccm-stack-flow-e2e-'));
    // The embedded Postgres runs as the postgres user when we are root: it must be able to enter.
    await chmod(dir, 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('policy put, vm launch, container run and migrate --follow succeed; SIGTERM leaves nothing', async () => {
    const state = join(dir, 'state');
    const tag = `stack-flow-${process.pid}`;
    const launcher = startLauncher(state, tag, ['--sim']);
    try {
      await launcher.running();
      const out = launcher.output();
      expect(out).toMatch(
        /container flow on host-a and host-b: sim drivers .*\(asked for --sim\); overlay ov-stack/,
      );
      // What the launcher prints is all the operator needs.
      const nats = /CCM_NATS_URL=(\S+) CCM_KEYS_DIR=(\S+)/.exec(out);
      const policyFile = /the guest owner's policy for web-1: (\S+)/.exec(out)?.[1];
      expect(nats).not.toBeNull();
      expect(policyFile).toBeDefined();
      const env = { CCM_NATS_URL: nats![1], CCM_KEYS_DIR: nats![2] };
      const run = async (line: string) => {
        const r = await ccm(words(line), env, undefined, 180_000);
        expect(r.code, `ccm ${line}: ${r.stderr}`).toBe(0);
        return r.stdout;
      };

      await run(`policy put ${policyFile!}`);
      const launched = JSON.parse(
        await run('vm launch --host host-a --workload web-1 --overlay ov-stack --json'),
      ) as { vmId: string };
      const started = JSON.parse(
        await run(`container run web-1 --vm ${launched.vmId} --overlay ov-stack --json`),
      ) as { state: string; overlay: { ip: string } };
      expect(started.state).toBe('running');
      expect(started.overlay.ip).toMatch(/^10\.77\.0\.\d+$/);
      const followed = await run(
        'migrate web-1 --from host-a --to host-b --follow --idempotency-key stack-flow-1',
      );
      expect(followed).toMatch(/Succeeded after .*: all 12 steps succeeded/);
      const detail = JSON.parse(await run(`migration ${migrationIdFor('stack-flow-1')} --json`)) as {
        phase: string;
      };
      expect(detail.phase).toBe('Succeeded');
      const vms = JSON.parse(await run('vms --host host-b --json')) as {
        vms: Array<{ provisionedBy?: string }>;
      };
      expect(vms.vms.some((v) => v.provisionedBy === migrationIdFor('stack-flow-1'))).toBe(true);

      process.kill(launcher.child.pid!, 'SIGTERM');
      expect(await launcher.exited(120_000)).toBe(0);
      // The sim VMs and their guest-agents too: the launcher ends what the host-agents leave.
      expect(launcher.output()).toMatch(/ended \d+ VM process\(es\) the host-agents left/);
      expect(await processesLeft(tag, state)).toEqual([]);
    } finally {
      if (launcher.exitCode() === undefined) process.kill(-launcher.child.pid!, 'SIGKILL');
    }
  }, 420_000);
});
