import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCcmError } from '@ccm/contracts';
import { type CommandRunner } from '@ccm/criu';
import { describe, expect, it } from 'vitest';
import { ContainerNetns, interfacesIn, LOCK_RULESET, LOCK_TABLE, netNames } from './netns.js';

/** A runner that records each argv and fails the ones `fails` matches (the commands are the unit here). */
function recorder(
  fails: (argv: readonly string[]) => boolean = () => false,
  prints: (argv: readonly string[]) => string = () => '',
) {
  const calls: string[] = [];
  const runner: CommandRunner = {
    run: (argv) => {
      calls.push(argv.join(' '));
      const bad = fails(argv);
      return Promise.resolve({
        exitCode: bad ? 1 : 0,
        signal: null,
        stdout: prints(argv),
        stderr: bad ? 'RTNETLINK answers: File exists' : '',
        timedOut: false,
      });
    },
  };
  return { calls, runner };
}

describe('a container network namespace', () => {
  it('has names that fit IFNAMSIZ and are the same in every guest', () => {
    const n = netNames('a-container-id-of-a-hundred-characters'.padEnd(100, 'x'));
    expect(n.host.length).toBeLessThanOrEqual(15);
    expect(n.peer.length).toBeLessThanOrEqual(15);
    expect(n.host).not.toBe(n.peer);
    expect(netNames('web1')).toEqual(netNames('web1'));
    expect(netNames('web1').host).not.toBe(netNames('web2').host);
  });

  it('the lock drops all but loopback both ways, made again in one transaction', () => {
    expect(LOCK_RULESET).toMatch(
      new RegExp(`^table inet ${LOCK_TABLE} \\{\\}\\ndelete table inet ${LOCK_TABLE}\\n`),
    );
    expect(LOCK_RULESET).toMatch(/hook input priority -300; policy drop; iifname "lo" accept;/);
    expect(LOCK_RULESET).toMatch(/hook output priority -300; policy drop; oifname "lo" accept;/);
  });

  it('create: namespace, locked first when asked, /32 on the veth, route in the guest', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-netns-'));
    try {
      const { calls, runner } = recorder((argv) => argv.includes('route') && argv.includes('replace'));
      const net = new ContainerNetns(runner, 1000, dir);
      const n = netNames('web1');
      // The last step (the guest's route) fails: the error is typed, what was made is removed.
      const e = await net.create('web1', { address: '10.218.0.7', port: 80 }, true).catch((x: unknown) => x);
      expect(isCcmError(e) && e.code).toBe('CONTAINER_RUNTIME_FAILED');
      expect((e as Error).message).toMatch(/File exists/);
      expect(calls.slice(0, 4)).toEqual([
        `ip link del ${n.host}`,
        `ip netns del ${n.ns}`,
        `ip netns add ${n.ns}`,
        `ip netns exec ${n.ns} nft -f ${join(dir, `${n.ns}.lock.nft`)}`,
      ]);
      expect(await readFile(join(dir, `${n.ns}.lock.nft`), 'utf8')).toBe(LOCK_RULESET);
      expect(calls).toContain(`ip -n ${n.ns} addr add 10.218.0.7/32 dev ${n.peer}`);
      expect(calls).toContain(`ip link add ${n.host} type veth peer name ${n.peer} netns ${n.ns}`);
      expect(calls.slice(-2)).toEqual([`ip link del ${n.host}`, `ip netns del ${n.ns}`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("create takes the /32 off the guest's own interfaces (the overlay's): the route to the veth must win", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ccm-netns-'));
    try {
      const held = '5: ccm-wg0    inet 10.218.0.7/32 scope global ccm-wg0\\       valid_lft forever\n';
      const { calls, runner } = recorder(undefined, (argv) => (argv.includes('show') ? held : ''));
      await new ContainerNetns(runner, 1000, dir).create('web1', { address: '10.218.0.7', port: 80 }, false);
      const route = calls.indexOf(`ip route replace 10.218.0.7/32 dev ${netNames('web1').host}`);
      expect(route).toBeGreaterThan(0);
      expect(calls.slice(route + 1, route + 3)).toEqual([
        'ip -o -4 addr show to 10.218.0.7/32',
        'ip addr del 10.218.0.7/32 dev ccm-wg0',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads interface names from `ip -o addr` lines', () => {
    expect(interfacesIn('')).toEqual([]);
    expect(
      interfacesIn('5: ccm-wg0    inet 10.0.0.4/32 scope global ccm-wg0\n7: eth0@if3    inet 10.0.0.4/32\n'),
    ).toEqual(['ccm-wg0', 'eth0']);
  });
});
