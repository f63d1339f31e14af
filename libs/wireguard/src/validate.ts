import { WgInvalidArgumentError } from './errors.js';

/** Linux interface names: 1–15 characters, no `/`, whitespace or `:`; we allow a safe subset. */
const IFNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
/** Network namespace names (files under /run/netns): the same safe subset, a little longer. */
const NETNS = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** A WireGuard key: base64 of 32 bytes (43 characters and one `=`). */
const KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function interfaceName(name: string): string {
  if (!IFNAME.test(name)) throw new WgInvalidArgumentError('interface name', name, '1-15 of [A-Za-z0-9_.-]');
  return name;
}

export function netnsName(name: string): string {
  if (!NETNS.test(name)) throw new WgInvalidArgumentError('namespace name', name, '1-63 of [A-Za-z0-9_.-]');
  return name;
}

/** A base64 WireGuard public or private key (32 bytes). */
export function wgKey(key: string): string {
  if (!KEY.test(key)) throw new WgInvalidArgumentError('key', key, 'not the base64 of 32 bytes');
  return key;
}

export function isWgKey(key: string): boolean {
  return KEY.test(key);
}

/** An IPv4 address as a 32-bit unsigned number. */
export function ipv4ToInt(ip: string): number {
  if (!IPV4.test(ip)) throw new WgInvalidArgumentError('IPv4 address', ip, 'not a dotted quad');
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

/** A parsed IPv4 CIDR: network address (host bits zero) and prefix length. */
export interface Cidr {
  readonly network: number;
  readonly prefix: number;
}

/**
 * Parses `a.b.c.d/n`. `strict` (the default) refuses host bits set, as an overlay's network must be
 * its own base address; allowed-IPs entries of a single host are `/32`.
 */
export function parseCidr(text: string, strict = true): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m) throw new WgInvalidArgumentError('CIDR', text, 'expected a.b.c.d/n');
  const prefix = Number(m[2]);
  if (prefix > 32) throw new WgInvalidArgumentError('CIDR', text, 'prefix longer than 32');
  const addr = ipv4ToInt(m[1]);
  const network = prefix === 0 ? 0 : (addr & maskOf(prefix)) >>> 0;
  if (strict && network !== addr) {
    throw new WgInvalidArgumentError(
      'CIDR',
      text,
      `host bits set (network is ${intToIpv4(network)}/${prefix})`,
    );
  }
  return { network, prefix };
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatCidr(c: Cidr): string {
  return `${intToIpv4(c.network)}/${c.prefix}`;
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.prefix)) >>> 0 === c.network;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (a.network & maskOf(p)) >>> 0 === (b.network & maskOf(p)) >>> 0;
}

/** `host:port` with an IPv4 host, as WireGuard endpoints are given here. */
export function endpoint(text: string): string {
  const m = /^([0-9.]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new WgInvalidArgumentError('endpoint', text, 'expected a.b.c.d:port');
  }
  ipv4ToInt(m[1]);
  return text;
}

/** A list of allowed-IPs entries (each a CIDR, host bits allowed as `wg` accepts them). */
export function allowedIps(list: readonly string[]): string[] {
  return list.map((c) => formatCidr(parseCidr(c, false)));
}

/** An interface address `a.b.c.d/n` (host bits kept), normalized. */
export function interfaceAddress(text: string): string {
  const { prefix } = parseCidr(text, false);
  return `${intToIpv4(ipv4ToInt(text.split('/')[0]))}/${prefix}`;
}
