import { VmSpecSchema } from '@ccm/contracts';
import { tapName } from '@ccm/qmp';
import { describe, expect, it } from 'vitest';
import { deviceArgs } from './devices.js';

describe('a VM spec’s devices', () => {
  it('gives QEMU virtio disks, a virtio NIC on the VM’s tap and fw_cfg files, escaping commas', () => {
    const spec = VmSpecSchema.parse({
      memoryMiB: 1024,
      kernel: '/k',
      disks: [
        { path: '/img/root,1.ext4', readOnly: true },
        { path: '/img/app.ext4', readOnly: false },
      ],
      nics: [{ bridge: 'ccmbr0', mac: '52:54:00:cc:00:0a' }],
      fwCfg: [{ name: 'opt/ccm/run', path: '/run/x/run.sh' }],
    });
    expect(deviceArgs('cvm-1', spec)).toEqual([
      '-drive',
      'file=/img/root,,1.ext4,if=virtio,format=raw,readonly=on',
      '-drive',
      'file=/img/app.ext4,if=virtio,format=raw',
      '-netdev',
      `tap,id=n0,ifname=${tapName('cvm-1', 0)},script=no,downscript=no`,
      '-device',
      'virtio-net-pci,netdev=n0,mac=52:54:00:cc:00:0a',
      '-fw_cfg',
      'name=opt/ccm/run,file=/run/x/run.sh',
    ]);
    expect(deviceArgs('cvm-1', VmSpecSchema.parse({ memoryMiB: 64 }))).toEqual([]);
  });

  it('gives a NIC without a MAC one made from the VM id: unicast, locally administered, per VM and NIC', () => {
    const spec = VmSpecSchema.parse({ memoryMiB: 64, nics: [{ bridge: 'ccmbr0' }, { bridge: 'ccmbr1' }] });
    const macs = (vmId: string) =>
      deviceArgs(vmId, spec)
        .filter((a) => a.startsWith('virtio-net-pci'))
        .map((a) => /mac=(.*)$/.exec(a)![1]);
    const [m0, m1] = macs('cvm-1');
    for (const m of [m0, m1])
      expect(VmSpecSchema.safeParse({ memoryMiB: 64, nics: [{ bridge: 'b', mac: m }] }).success).toBe(true);
    expect(m0).toMatch(/^52:54:/);
    expect(m1).not.toBe(m0);
    expect(macs('cvm-1')).toEqual([m0, m1]);
    expect(macs('cvm-2')[0]).not.toBe(m0);
  });

  it.each([
    [
      'a bridge name that is not an interface name',
      { nics: [{ bridge: 'br0;rm -rf /', mac: '52:54:00:00:00:01' }] },
    ],
    ['a bridge name longer than 15 bytes', { nics: [{ bridge: 'b'.repeat(16), mac: '52:54:00:00:00:01' }] }],
    ['a multicast MAC', { nics: [{ bridge: 'br0', mac: '01:00:5e:00:00:01' }] }],
    ['an upper-case MAC', { nics: [{ bridge: 'br0', mac: '52:54:00:AA:00:01' }] }],
    ['a relative disk path', { disks: [{ path: 'root.ext4', readOnly: true }] }],
    ['a disk without readOnly', { disks: [{ path: '/root.ext4' }] }],
    ['a fw_cfg name outside opt/', { fwCfg: [{ name: 'etc/boot-menu', path: '/x' }] }],
    ['a fw_cfg name with a comma', { fwCfg: [{ name: 'opt/a,b', path: '/x' }] }],
    ['five disks', { disks: Array.from({ length: 5 }, () => ({ path: '/d', readOnly: true })) }],
    ['a cpu model QEMU is not given', { cpu: 'qemu64,+x' }],
  ])('refuses %s', (_what, extra) => {
    expect(VmSpecSchema.safeParse({ memoryMiB: 64, ...extra }).success).toBe(false);
  });
});
