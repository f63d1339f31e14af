import { ipOrThrow, netnsUnavailable, pollUntil } from '@ccm/testing';
import { findQemuBinary, startQemu, type QemuProcess } from '@ccm/qmp';
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestScript } from './__fixtures__/guest-scripts.js';
import { killOnSignal } from './__fixtures__/kill-on-signal.js';
import {
  BOOT_FAILED_MARKER,
  containerBuildUnavailable,
  containerGuestSpec,
  ensureContainerImage,
  RUN_DONE_PATTERN,
  type ContainerImage,
} from './container-image.js';
import { listCpio } from './cpio.js';
import { GUEST_READY_MARKER } from './guest-image.js';

/**
 * The container guest image (container-image.ts) built from Debian packages (cached after the first
 * run) and booted under the project's QEMU with TCG. The smoke script (__fixtures__/container-smoke.sh)
 * goes in over fw_cfg; the guest runs it once ready and prints one CCM-SMOKE line per result: Node's
 * version, `criu check`, and a runc container whose counter survives `runc checkpoint` + `runc restore`.
 * When network namespaces work the guest gets a tap in a private namespace and configures eth0 from
 * the kernel command line.
 */

const qemuBinary = findQemuBinary();
const skipReason = !qemuBinary
  ? 'qemu-system-x86_64 is not installed (tools/dev.sh installs qemu-system-x86 from tools/system-packages.txt)'
  : containerBuildUnavailable();
if (skipReason) console.warn(`[container guest] skipping: ${skipReason}`);
const netSkip = skipReason ? undefined : netnsUnavailable();
if (netSkip) console.warn(`[container guest] booting without a network: ${netSkip}`);

const NET = { ns: `ccm-gi-${process.pid}`, tap: 'ccmtap0', host: '10.213.0.1', guest: '10.213.0.2/24' };

/** `CCM-SMOKE <name> <value>` lines → name → value (the last one wins). */
function smokeResults(serial: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of serial.matchAll(/^CCM-SMOKE (\S+) ?(.*?)\r?$/gm)) out.set(m[1], m[2]);
  return out;
}
const field = (value: string | undefined, name: string): number =>
  Number(new RegExp(`\\b${name}=(\\d+)`).exec(value ?? '')?.[1] ?? Number.NaN);

describe.skipIf(skipReason !== undefined)('the container guest under QEMU (TCG)', () => {
  let image: ContainerImage;
  let guest: QemuProcess | undefined;
  let netns: string | undefined;
  let work: string;
  const started: QemuProcess[] = [];
  const namespaces: string[] = [];
  const unhook = killOnSignal(
    () => started.filter((q) => !q.exitStatus()).map((q) => q.pid),
    () => namespaces.forEach((ns) => spawnSync('ip', ['netns', 'del', ns])),
  );

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ccm-gimg-'));
    image = await ensureContainerImage({ log: (m) => console.log(`[container guest] ${m}`) });
    const m = image.manifest;
    console.log(
      `[container guest] image ${image.key} ${image.cached ? 'from cache' : 'built'} in ${image.elapsedMs} ms; ` +
        `root disk ${(m.rootDiskBytes / 1e6).toFixed(1)} MB (${(m.rootfsBytes / 1e6).toFixed(1)} MB of files), ` +
        `initramfs ${(m.initrdBytes / 1e6).toFixed(1)} MB, ${m.rootModules} modules; ${JSON.stringify(m.packageVersions)}`,
    );
  }, 900_000);
  afterAll(async () => {
    await guest?.kill();
    if (netns) spawnSync('ip', ['netns', 'del', netns]);
    if (work) await rm(work, { recursive: true, force: true });
    unhook();
  });

  it('holds a PVH kernel, an initramfs that mounts the ext4 root, and trixie userspace', async () => {
    expect((await readFile(image.kernel)).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    const entries = new Map(listCpio(await readFile(image.initrd)).map((e) => [e.path, e]));
    expect(entries.get('init')?.mode).toBe(0o100755);
    expect(entries.has('lib/modules/virtio_blk.ko')).toBe(true);
    expect(entries.has('lib/modules/ext4.ko')).toBe(true);
    const ext4Magic = Buffer.alloc(2);
    const fh = await open(image.rootDisk, 'r');
    await fh.read(ext4Magic, 0, 2, 1024 + 0x38).finally(() => fh.close());
    expect(ext4Magic.readUInt16LE(0)).toBe(0xef53);
    expect(image.manifest.packageVersions['nodejs']).toMatch(/^20\.(19|[2-9]\d)\./);
    expect(image.manifest.packageVersions['criu']).toMatch(/^4\./);
    expect(image.manifest.rootModules).toBeGreaterThan(40);
  });

  it('boots to ready, runs node and criu check, and a runc container survives checkpoint + restore', async () => {
    const net = netSkip === undefined;
    if (net) {
      netns = NET.ns;
      namespaces.push(netns);
      ipOrThrow('netns', 'add', netns);
      ipOrThrow('-n', netns, 'link', 'set', 'lo', 'up');
      ipOrThrow('-n', netns, 'tuntap', 'add', 'dev', NET.tap, 'mode', 'tap');
      ipOrThrow('-n', netns, 'addr', 'add', `${NET.host}/24`, 'dev', NET.tap);
      ipOrThrow('-n', netns, 'link', 'set', NET.tap, 'up');
    }
    const spec = containerGuestSpec(image, {
      runScript: await guestScript(join(work, 'smoke.sh'), ['container-smoke.sh']),
      poweroff: true,
      hostname: 'smoke',
      ...(net ? { tap: NET.tap, ip: NET.guest, gateway: NET.host } : {}),
    });
    const t0 = Date.now();
    guest = await startQemu({ ...spec, name: 'container-smoke', netns, accel: 'tcg' });
    started.push(guest);
    const serial = (): Promise<string> => readFile(guest!.paths.serialLog, 'utf8').catch(() => '');
    const ready = await pollUntil(
      'the container guest to print its ready marker',
      serial,
      (s) => s.includes(GUEST_READY_MARKER) || s.includes(BOOT_FAILED_MARKER),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const readyMs = Date.now() - t0;
    expect(ready).not.toContain(BOOT_FAILED_MARKER);
    const uptime = /CCM-GUEST-READY uptime=([\d.]+)/.exec(ready)?.[1];
    const text = await pollUntil('the smoke script to finish', serial, (s) => RUN_DONE_PATTERN.test(s), {
      timeoutMs: 180_000,
      intervalMs: 250,
    });
    const doneMs = Date.now() - t0;
    const r = smokeResults(text);
    console.log(
      `[container guest] boot to ready ${readyMs} ms (guest uptime ${uptime} s), smoke done at ${doneMs} ms\n` +
        [...r].map(([k, v]) => `  ${k} ${v}`).join('\n'),
    );
    expect(RUN_DONE_PATTERN.exec(text)?.[1]).toBe('0');

    const [major, minor] = (r.get('node') ?? '').replace(/^v/, '').split('.').map(Number);
    expect(major > 20 || (major === 20 && minor >= 19)).toBe(true);
    expect(r.get('criu-check')).toBe('Looks good.');
    if (net) {
      expect(r.get('eth0')).toContain(NET.guest);
      expect(r.get('ping')).toBe(`${NET.host} ok`);
    }

    expect(field(r.get('run'), 'rc')).toBe(0);
    expect(Number(r.get('counting'))).toBeGreaterThan(5);
    expect(field(r.get('checkpoint'), 'rc')).toBe(0);
    expect(field(r.get('checkpoint'), 'kib')).toBeGreaterThan(0);
    const after = r.get('after-checkpoint') ?? '';
    expect(after).toContain('state=gone'); // runc checkpoint ends the container…
    expect(field(after, 'later')).toBe(field(after, 'at')); // …so its counter stands still
    expect(field(r.get('restore'), 'rc')).toBe(0);
    const restored = r.get('restored');
    expect(field(restored, 'at')).toBe(field(after, 'at'));
    expect(field(restored, 'now')).toBeGreaterThan(field(restored, 'at') + 5); // counting on from where it stood

    const exit = await pollUntil('the guest to power off', () => guest!.exitStatus(), Boolean, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    expect(exit?.code).toBe(0);
  }, 300_000);

  describe.skipIf(netSkip !== undefined)('two guests on a bridge', () => {
    const ns = `ccm-gi2-${process.pid}`;
    const guests: QemuProcess[] = [];
    let made = false;
    afterAll(async () => {
      await Promise.all(guests.map((g) => g.kill()));
      if (made) spawnSync('ip', ['netns', 'del', ns]);
    });

    it('runc checkpoint in guest A, the images over virtio-net, runc restore in guest B: the counter goes on', async () => {
      namespaces.push(ns);
      ipOrThrow('netns', 'add', ns);
      made = true;
      ipOrThrow('-n', ns, 'link', 'set', 'lo', 'up');
      ipOrThrow('-n', ns, 'link', 'add', 'br0', 'type', 'bridge');
      ipOrThrow('-n', ns, 'addr', 'add', '10.215.0.1/24', 'dev', 'br0');
      ipOrThrow('-n', ns, 'link', 'set', 'br0', 'up');
      for (const tap of ['tapa', 'tapb']) {
        ipOrThrow('-n', ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
        ipOrThrow('-n', ns, 'link', 'set', tap, 'master', 'br0');
        ipOrThrow('-n', ns, 'link', 'set', tap, 'up');
      }
      const boot = async (name: string, tap: string, ip: string, mac: string, parts: string[], vars = {}) => {
        const spec = containerGuestSpec(image, {
          runScript: await guestScript(join(work, `${name}.sh`), parts, vars),
          tap,
          ip,
          gateway: '10.215.0.1',
          mac,
          hostname: name,
        });
        const q = await startQemu({ ...spec, name, netns: ns, accel: 'tcg' });
        guests.push(q);
        started.push(q);
        return q;
      };
      const t0 = Date.now();
      const a = await boot('guest-a', 'tapa', '10.215.0.2/24', '52:54:00:cc:00:0a', [
        'container-migrate-a.sh',
      ]);
      const b = await boot(
        'guest-b',
        'tapb',
        '10.215.0.3/24',
        '52:54:00:cc:00:0b',
        ['container-migrate-b.sh'],
        {
          CCM_PEER: '10.215.0.2',
        },
      );
      const serial = (q: QemuProcess) => (): Promise<string> =>
        readFile(q.paths.serialLog, 'utf8').catch(() => '');
      const done = (s: string): boolean => RUN_DONE_PATTERN.test(s);
      const textB = await pollUntil('guest B to restore the container', serial(b), done, {
        timeoutMs: 240_000,
        intervalMs: 250,
      });
      const textA = await serial(a)();
      const ra = smokeResults(textA);
      const rb = smokeResults(textB);
      console.log(
        `[container guest] two guests: B done ${Date.now() - t0} ms after A started\n` +
          [...ra].map(([k, v]) => `  A ${k} ${v}`).join('\n') +
          '\n' +
          [...rb].map(([k, v]) => `  B ${k} ${v}`).join('\n'),
      );
      expect(field(ra.get('checkpoint'), 'rc')).toBe(0);
      const atA = field(ra.get('after-checkpoint'), 'at');
      expect(field(ra.get('after-checkpoint'), 'later')).toBe(atA); // gone from A
      expect(rb.get('fetched')).toMatch(/kib=[1-9]/);
      expect(field(rb.get('restore'), 'rc')).toBe(0);
      expect(field(rb.get('restored'), 'at')).toBe(atA);
      expect(field(rb.get('restored'), 'now')).toBeGreaterThan(atA + 5); // counting on in B
    }, 300_000);
  });
});
