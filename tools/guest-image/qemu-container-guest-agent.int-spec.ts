import { guestClient, ipOrThrow, pollUntil, startTestStack, type TestStack } from '@ccm/testing';
import { startQemu, type QemuProcess } from '@ccm/qmp';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killOnSignal } from './__fixtures__/kill-on-signal.js';
import { AGENT_RUN_SCRIPT, agentGuestUnavailable } from './__fixtures__/agent-guest.js';
import { buildAppDisk, shellEnvFile, type AppDisk } from './app-disk.js';
import { containerGuestSpec, ensureContainerImage, type ContainerImage } from './container-image.js';

/**
 * The guest-agent inside the container guest: its dist/ code and the npm packages it imports go on a
 * second read-only disk built for this run (app-disk.ts) with its environment (NATS URL, vmId) and the
 * stack's keys; the fw_cfg run script mounts it and starts the agent. The guest reaches a nats-server
 * listening on the host side of a tap; the test pings the agent over NATS.
 */

const repoRoot = resolve(import.meta.dirname, '..', '..');
const skipReason = agentGuestUnavailable();
if (skipReason) console.warn(`[container guest-agent] skipping: ${skipReason}`);

const TAP = `ccmga${process.pid % 100000}`;
const HOST = '10.214.0.1';
const GUEST = '10.214.0.2/24';
const VM_ID = 'vm-gimg';

describe.skipIf(skipReason !== undefined)('the guest-agent in the container guest', () => {
  let image: ContainerImage;
  let stack: TestStack | undefined;
  let guest: QemuProcess | undefined;
  let work: string;
  let disk: AppDisk;
  let tapMade = false;
  const unhook = killOnSignal(
    () => (guest && !guest.exitStatus() ? [guest.pid] : []),
    () => tapMade && spawnSync('ip', ['link', 'del', TAP]),
  );

  beforeAll(async () => {
    image = await ensureContainerImage();
    work = await mkdtemp(join(tmpdir(), 'ccm-gimg-agent-'));
    // The tap exists (with the host's address) before nats-server binds to that address.
    ipOrThrow('tuntap', 'add', 'dev', TAP, 'mode', 'tap');
    tapMade = true;
    ipOrThrow('addr', 'add', `${HOST}/24`, 'dev', TAP);
    ipOrThrow('link', 'set', TAP, 'up');
    stack = await startTestStack({ postgres: false, listen: { host: HOST, clientCidrs: ['10.214.0.0/24'] } });
    const env = stack.env({
      CCM_VM_ID: VM_ID,
      CCM_INSTANCE_ID: `guest-${VM_ID}`,
      CCM_KEYS_DIR: '/run/ccm/app/keys',
      CCM_GUEST_STREAM_HOST: GUEST.split('/')[0],
    });
    const t0 = Date.now();
    disk = await buildAppDisk({
      repoRoot,
      entry: 'dist/apps/guest-agent/src/main.js',
      out: join(work, 'app.ext4'),
      extra: { 'ccm.env': shellEnvFile(env) },
      extraDirs: { keys: stack.keysDir },
    });
    console.log(
      `[container guest-agent] app disk in ${Date.now() - t0} ms: ${disk.files} dist files, ` +
        `${disk.packages.length} packages, ${(disk.bytes / 1e6).toFixed(1)} MB; NATS ${env['CCM_NATS_URL']}`,
    );
  }, 900_000);
  afterAll(async () => {
    await guest?.kill();
    await stack?.stop();
    if (tapMade) spawnSync('ip', ['link', 'del', TAP]);
    if (work) await rm(work, { recursive: true, force: true });
    unhook();
  });

  it('starts from the app disk, reaches NATS over the tap and answers ping', async () => {
    const spec = containerGuestSpec(image, {
      runScript: AGENT_RUN_SCRIPT,
      appDisk: disk.path,
      tap: TAP,
      ip: GUEST,
      gateway: HOST,
      hostname: VM_ID,
    });
    const t0 = Date.now();
    guest = await startQemu({ ...spec, name: 'container-agent', accel: 'tcg' });
    const serial = (): Promise<string> => readFile(guest!.paths.serialLog, 'utf8').catch(() => '');
    const nc = await stack!.connectAs('operator');
    const client = await guestClient(nc, stack!.keysDir);
    const reply = await pollUntil(
      'the guest-agent in the guest to answer ping',
      () =>
        client.send(VM_ID, 'ping', { message: 'from the host' }, { timeoutMs: 2_000 }).catch(() => undefined),
      Boolean,
      { timeoutMs: 180_000, intervalMs: 1_000 },
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; serial console:\n${(await serial()).slice(-3000)}`);
    });
    const text = await serial();
    console.log(
      `[container guest-agent] ping answered ${Date.now() - t0} ms after QEMU started: ${JSON.stringify(reply)}\n` +
        text
          .split('\n')
          .filter((l) => /CCM-/.test(l))
          .join('\n'),
    );
    expect(reply).toMatchObject({
      service: 'guest-agent',
      instanceId: `guest-${VM_ID}`,
      echo: 'from the host',
    });
    expect(text).toMatch(/CCM-AGENT starting node v20\.\d+/);
  }, 300_000);
});
