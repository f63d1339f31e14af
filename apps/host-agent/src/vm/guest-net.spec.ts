import { configSchema } from '../config.js';
import { describe, expect, it } from 'vitest';
import {
  guestVmBlob,
  keepCarriedLease,
  leaseAddress,
  onGuestNet,
  parseGuestNet,
  type GuestNet,
} from './guest-net.js';

const NET = 'bridge=ccmg0,cidr=10.77.5.0/24,range=10.77.5.100-10.77.5.102,gateway=10.77.5.1';

describe('the host’s guest network (CCM_GUEST_NET)', () => {
  it('parses bridge, CIDR, range and gateway', () => {
    expect(parseGuestNet(NET)).toEqual({
      bridge: 'ccmg0',
      prefix: 24,
      gateway: '10.77.5.1',
      first: (10 << 24) + (77 << 16) + (5 << 8) + 100,
      last: (10 << 24) + (77 << 16) + (5 << 8) + 102,
      cidr: '10.77.5.0/24',
      network: (10 << 24) + (77 << 16) + (5 << 8),
    });
    expect(parseGuestNet('bridge=b,cidr=10.0.0.0/16,range=10.0.1.1-10.0.1.9')).toMatchObject({ prefix: 16 });
  });

  it.each([
    ['an unknown field', `${NET},dns=1.1.1.1`],
    ['a field twice', `${NET},bridge=x`],
    ['no bridge', 'cidr=10.0.0.0/24,range=10.0.0.2-10.0.0.9'],
    ['a bridge that is no interface name', 'bridge=br 0;x,cidr=10.0.0.0/24,range=10.0.0.2-10.0.0.9'],
    ['a CIDR without prefix', 'bridge=b,cidr=10.0.0.0,range=10.0.0.2-10.0.0.9'],
    ['a /31', 'bridge=b,cidr=10.0.0.0/31,range=10.0.0.0-10.0.0.1'],
    ['a range outside the CIDR', 'bridge=b,cidr=10.0.0.0/24,range=10.0.1.2-10.0.1.9'],
    ['a range with the network address', 'bridge=b,cidr=10.0.0.0/24,range=10.0.0.0-10.0.0.9'],
    ['a range with the broadcast address', 'bridge=b,cidr=10.0.0.0/24,range=10.0.0.9-10.0.0.255'],
    ['a range backwards', 'bridge=b,cidr=10.0.0.0/24,range=10.0.0.9-10.0.0.2'],
    ['a gateway in the range', 'bridge=b,cidr=10.0.0.0/24,range=10.0.0.2-10.0.0.9,gateway=10.0.0.5'],
    ['a gateway outside the CIDR', 'bridge=b,cidr=10.0.0.0/24,range=10.0.0.2-10.0.0.9,gateway=10.9.0.1'],
  ])('refuses %s, and the host-agent’s config names it', (_what, value) => {
    expect(typeof parseGuestNet(value)).toBe('string');
    const r = configSchema.safeParse({ CCM_HOST_ID: 'h', CCM_GUEST_NET: value });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join('.'))).toContain('CCM_GUEST_NET');
  });

  it('leases the first free address of the range, and refuses (REFUSED, retryable) when all are taken', () => {
    const net = parseGuestNet(NET) as GuestNet;
    expect(leaseAddress(net, [])).toEqual({ address: '10.77.5.100', prefix: 24, gateway: '10.77.5.1' });
    expect(leaseAddress(net, ['10.77.5.100']).address).toBe('10.77.5.101');
    expect(leaseAddress(net, ['10.77.5.101']).address).toBe('10.77.5.100');
    expect(() => leaseAddress(net, ['10.77.5.100', '10.77.5.101', '10.77.5.102'])).toThrow(
      expect.objectContaining({ code: 'REFUSED', retryable: true }),
    );
  });

  it('applies to a VM with a NIC on its bridge only', () => {
    const net = parseGuestNet(NET) as GuestNet;
    expect(onGuestNet(net, { memoryMiB: 64, cpus: 1, nics: [{ bridge: 'ccmg0' }] })).toBe(true);
    expect(onGuestNet(net, { memoryMiB: 64, cpus: 1, nics: [{ bridge: 'other' }] })).toBe(false);
    expect(onGuestNet(net, { memoryMiB: 64, cpus: 1 })).toBe(false);
    expect(onGuestNet(undefined, { memoryMiB: 64, cpus: 1, nics: [{ bridge: 'ccmg0' }] })).toBe(false);
  });

  it('gives the guest its VM id, address, route and stream address as a shell env file', () => {
    expect(guestVmBlob('cvm-1', { address: '10.77.5.100', prefix: 24, gateway: '10.77.5.1' })).toBe(
      "CCM_VM_ID='cvm-1'\nCCM_INSTANCE_ID='guest-cvm-1'\nCCM_GUEST_ADDRESS='10.77.5.100/24'\n" +
        "CCM_GUEST_GATEWAY='10.77.5.1'\nCCM_GUEST_STREAM_HOST='10.77.5.100'\n",
    );
  });

  describe('an incoming VM keeps the lease it carries from its source', () => {
    const net = parseGuestNet(NET) as GuestNet;
    const spec = { memoryMiB: 64, cpus: 1, nics: [{ bridge: 'ccmg0' }] };
    const carried = { address: '10.77.5.160', prefix: 24, gateway: '10.77.5.1' };

    it('as it is, outside this host’s range but inside its CIDR', () => {
      expect(keepCarriedLease(net, spec, 'vm1', carried, new Map([['10.77.5.100', 'other']]))).toEqual(
        carried,
      );
    });

    it.each([
      ['outside the CIDR', { ...carried, address: '10.77.6.160' }, new Map<string, string>(), 'outside-cidr'],
      [
        'the network address',
        { ...carried, address: '10.77.5.0' },
        new Map<string, string>(),
        'outside-cidr',
      ],
      [
        'the broadcast address',
        { ...carried, address: '10.77.5.255' },
        new Map<string, string>(),
        'outside-cidr',
      ],
      ['leased to another VM here', carried, new Map([['10.77.5.160', 'vm9']]), 'leased'],
    ])('refuses an address %s (GUEST_ADDRESS_UNAVAILABLE, not retryable)', (_what, lease, held, reason) => {
      expect(() => keepCarriedLease(net, spec, 'vm1', lease, held)).toThrow(
        expect.objectContaining({
          code: 'GUEST_ADDRESS_UNAVAILABLE',
          retryable: false,
          details: expect.objectContaining({ reason, address: lease.address }),
        }),
      );
    });

    it('refuses it on a host without a guest network on the VM’s bridge', () => {
      const cases: Array<[GuestNet | undefined, typeof spec]> = [
        [undefined, spec],
        [net, { ...spec, nics: [{ bridge: 'other' }] }],
      ];
      for (const [n, s] of cases) {
        expect(() => keepCarriedLease(n, s, 'vm1', carried, new Map())).toThrow(
          expect.objectContaining({ details: expect.objectContaining({ reason: 'no-guest-net' }) }),
        );
      }
    });
  });
});
