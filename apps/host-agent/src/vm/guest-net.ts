import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import {
  CcmError,
  ErrorCodes,
  HostErrorCodes,
  type GuestLease as ContractGuestLease,
  type VmSpec,
} from '@ccm/contracts';

/**
 * A host's guest network: the bridge its guests' NICs sit on and the addresses it hands them, one per
 * VM (CCM_GUEST_NET). The guest learns its address from a fw_cfg blob ({@link FW_CFG_VM}) rather than
 * its kernel command line, which an attested launch measures: one command line serves every VM.
 */
export interface GuestNet {
  bridge: string;
  /** The segment's prefix length (the CIDR's). */
  prefix: number;
  /** The guests' default route, if any. */
  gateway?: string;
  /** The addresses handed out, first and last (inside the CIDR). */
  first: number;
  last: number;
  /** The CIDR as configured (for messages); its network address is {@link network}. */
  cidr: string;
  network: number;
}

/** One VM's address on its host's guest network (kept with the VM's state; `describe` shows it). */
export type GuestLease = ContractGuestLease;

/** fw_cfg name of the per-VM blob: a `NAME='value'` env file the guest's run script reads. */
export const FW_CFG_VM = 'opt/ccm/vm';
/** The blob's file in the VM's runtime dir (QEMU reads it at start). */
export const GUEST_VM_FILE = 'guest-vm.env';

const IF_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

const toInt = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const toAddr = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/**
 * Parses CCM_GUEST_NET, `bridge=NAME,cidr=A.B.C.D/P,range=FIRST-LAST[,gateway=A.B.C.D]`. Returns the
 * reason as a string when it is not valid (the config schema turns it into a config error).
 */
export function parseGuestNet(value: string): GuestNet | string {
  const fields = new Map<string, string>();
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq).trim();
    if (eq < 0 || !['bridge', 'cidr', 'range', 'gateway'].includes(key))
      return `"${part}" is not bridge=, cidr=, range= or gateway=`;
    if (fields.has(key)) return `${key}= is given twice`;
    fields.set(key, part.slice(eq + 1).trim());
  }
  const bridge = fields.get('bridge') ?? '';
  if (!IF_NAME.test(bridge)) return 'bridge= must name an interface (1-15 letters, digits, . _ -)';
  const [net, p] = (fields.get('cidr') ?? '').split('/');
  const prefix = Number(p);
  if (!isIPv4(net ?? '') || !Number.isInteger(prefix) || prefix < 8 || prefix > 30)
    return 'cidr= must be an IPv4 network A.B.C.D/P with 8 ≤ P ≤ 30';
  const size = 2 ** (32 - prefix);
  const base = toInt(net) - (toInt(net) % size);
  const inside = (a: string) => isIPv4(a) && toInt(a) > base && toInt(a) < base + size - 1;
  const [from, to] = (fields.get('range') ?? '').split('-');
  if (!inside(from ?? '') || !inside(to ?? '') || toInt(from) > toInt(to))
    return `range= must be FIRST-LAST, host addresses of ${fields.get('cidr')} in order`;
  const gateway = fields.get('gateway');
  if (gateway !== undefined && !inside(gateway))
    return `gateway= must be a host address of ${fields.get('cidr')}`;
  if (gateway !== undefined && toInt(gateway) >= toInt(from) && toInt(gateway) <= toInt(to))
    return 'gateway= must not be in range=';
  return {
    bridge,
    prefix,
    ...(gateway ? { gateway } : {}),
    first: toInt(from),
    last: toInt(to),
    cidr: `${toAddr(base)}/${prefix}`,
    network: base,
  };
}

/** Whether a VM with this spec sits on the guest network (a NIC on its bridge). */
export function onGuestNet(net: GuestNet | undefined, spec: VmSpec): net is GuestNet {
  return !!net && (spec.nics ?? []).some((n) => n.bridge === net.bridge);
}

/** The first address of the range no other VM holds; REFUSED when every one is taken. */
export function leaseAddress(net: GuestNet, taken: Iterable<string>): GuestLease {
  const held = new Set(taken);
  for (let a = net.first; a <= net.last; a++) {
    const address = toAddr(a);
    if (!held.has(address))
      return { address, prefix: net.prefix, ...(net.gateway ? { gateway: net.gateway } : {}) };
  }
  throw new CcmError(
    ErrorCodes.Refused,
    `every guest address of ${toAddr(net.first)}-${toAddr(net.last)} on ${net.bridge} is leased`,
    { retryable: true, effect: 'none', details: { bridge: net.bridge, leased: held.size } },
  );
}

/**
 * The lease an incoming VM brings from its source: the guest keeps the address it configured there, so
 * this host keeps it as it is — prefix and gateway included, in or out of this host's range — when the
 * address is a host address of this host's CIDR and no other VM here holds it. `holders` maps the
 * addresses held here to their VMs. Otherwise GUEST_ADDRESS_UNAVAILABLE, not retryable: the guest cannot
 * change its address, so no other host-agent answer would.
 */
export function keepCarriedLease(
  net: GuestNet | undefined,
  spec: VmSpec,
  vmId: string,
  lease: GuestLease,
  holders: ReadonlyMap<string, string>,
): GuestLease {
  const refuse = (reason: string, message: string, extra: Record<string, unknown> = {}): never => {
    throw new CcmError(HostErrorCodes.GuestAddressUnavailable, `${vmId}: ${message}`, {
      retryable: false,
      effect: 'none',
      details: { address: lease.address, reason, ...extra },
    });
  };
  if (!onGuestNet(net, spec))
    return refuse(
      'no-guest-net',
      `the guest holds ${lease.address} but this host has no guest network (CCM_GUEST_NET) on its NIC's bridge`,
    );
  const a = toInt(lease.address);
  const size = 2 ** (32 - net.prefix);
  if (a <= net.network || a >= net.network + size - 1)
    return refuse('outside-cidr', `its address ${lease.address} is not a host address of ${net.cidr}`, {
      cidr: net.cidr,
    });
  const heldBy = holders.get(lease.address);
  if (heldBy !== undefined && heldBy !== vmId)
    return refuse('leased', `its address ${lease.address} is leased to VM ${heldBy} on this host`, {
      heldBy,
    });
  return {
    address: lease.address,
    prefix: lease.prefix,
    ...(lease.gateway ? { gateway: lease.gateway } : {}),
  };
}

/** The MAC a NIC without one gets: locally administered, unicast, the same for a VM id on every host. */
export function macFor(vmId: string, index: number): string {
  const h = createHash('sha256').update(`${vmId}#${index}`).digest();
  return ['52', '54', ...[...h.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The per-VM blob: what the guest's run script needs beyond the shared app disk — its VM id, eth0's
 * address and route, the address it serves image streams on.
 */
export function guestVmBlob(vmId: string, lease: GuestLease): string {
  const env: Record<string, string> = {
    CCM_VM_ID: vmId,
    CCM_INSTANCE_ID: `guest-${vmId}`,
    CCM_GUEST_ADDRESS: `${lease.address}/${lease.prefix}`,
    ...(lease.gateway ? { CCM_GUEST_GATEWAY: lease.gateway } : {}),
    CCM_GUEST_STREAM_HOST: lease.address,
  };
  // VM ids and addresses are validated: no quote can occur, but keep the file a safe shell source.
  return Object.entries(env)
    .map(([k, v]) => `${k}='${v.replace(/'/g, `'\\''`)}'\n`)
    .join('');
}
