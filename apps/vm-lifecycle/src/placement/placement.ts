import { type PlacementRejection, type RejectedHost } from '@ccm/contracts';

/** A SEV firmware version: the platform TCB a host reports (PLATFORM_STATUS). */
export interface Tcb {
  apiMajor: number;
  apiMinor: number;
  build: number;
}

/** What placement needs to know of a host. */
export interface PlacementHost {
  hostId: string;
  live: boolean;
  sev: boolean;
  sevSnp: boolean;
  tcb?: Tcb;
  memoryMiB: number;
  cpus: number;
  allocatedMemoryMiB: number;
  allocatedCpus: number;
}

export interface PlacementRequest {
  memoryMiB: number;
  cpus: number;
  /** The VM's (or workload's) current host: never chosen, and its TCB is the floor. */
  sourceHost?: string;
  /** Only these hosts may be chosen. */
  candidates?: readonly string[];
  requireSnp?: boolean;
}

export type PlacementResult =
  { ok: true; hostId: string; rejected: RejectedHost[] } | { ok: false; rejected: RejectedHost[] };

/** Compares two TCBs: negative when `a` is below `b`. */
export function compareTcb(a: Tcb, b: Tcb): number {
  return a.apiMajor - b.apiMajor || a.apiMinor - b.apiMinor || a.build - b.build;
}

export const tcbText = (t: Tcb): string => `${t.apiMajor}.${t.apiMinor}.${t.build}`;

/** Every reason `host` cannot take the VM (empty: it can). */
export function rejections(
  host: PlacementHost,
  req: PlacementRequest,
  source: PlacementHost | undefined,
): Array<{ code: PlacementRejection; detail: string }> {
  const out: Array<{ code: PlacementRejection; detail: string }> = [];
  const no = (code: PlacementRejection, detail: string) => out.push({ code, detail });
  if (req.candidates && !req.candidates.includes(host.hostId)) {
    no('not-a-candidate', `not among ${req.candidates.join(', ')}`);
  }
  if (host.hostId === req.sourceHost) no('source-host', 'the source host (anti-affinity)');
  if (!host.live) no('not-live', 'no heartbeat within the liveness timeout');
  if (!host.sev) no('no-sev', 'no SEV (neither firmware nor emulator)');
  else if (req.requireSnp && !host.sevSnp) no('no-snp', 'SEV-SNP required, the host has none');
  if (source?.tcb && host.hostId !== source.hostId) {
    if (!host.tcb) no('tcb-below-source', `no TCB reported, the source has ${tcbText(source.tcb)}`);
    else if (compareTcb(host.tcb, source.tcb) < 0) {
      no('tcb-below-source', `TCB ${tcbText(host.tcb)} is below the source's ${tcbText(source.tcb)}`);
    }
  }
  const freeMemory = host.memoryMiB - host.allocatedMemoryMiB;
  if (freeMemory < req.memoryMiB) no('memory', `${freeMemory} MiB free, ${req.memoryMiB} MiB needed`);
  const freeCpus = host.cpus - host.allocatedCpus;
  if (freeCpus < req.cpus) no('cpus', `${freeCpus} vCPUs free, ${req.cpus} needed`);
  return out;
}

/**
 * Picks the host for a VM among `hosts`: live, with SEV (SNP when asked), a TCB at least the source
 * host's, room for its memory and vCPUs, and not the source host. Of the hosts that qualify, the one
 * with the most free memory (then the fewest vCPUs taken, then by id) wins. Every host not chosen for
 * a reason is listed with all its reasons; a refusal lists every host.
 */
export function placeVm(hosts: readonly PlacementHost[], req: PlacementRequest): PlacementResult {
  const source = req.sourceHost ? hosts.find((h) => h.hostId === req.sourceHost) : undefined;
  const rejected: RejectedHost[] = [];
  const fit: PlacementHost[] = [];
  for (const h of hosts) {
    const reasons = rejections(h, req, source);
    if (reasons.length) rejected.push({ hostId: h.hostId, reasons });
    else fit.push(h);
  }
  for (const c of req.candidates ?? []) {
    if (!hosts.some((h) => h.hostId === c)) {
      rejected.push({ hostId: c, reasons: [{ code: 'not-live', detail: 'never registered' }] });
    }
  }
  const free = (h: PlacementHost) => h.memoryMiB - h.allocatedMemoryMiB;
  fit.sort(
    (a, b) => free(b) - free(a) || a.allocatedCpus - b.allocatedCpus || a.hostId.localeCompare(b.hostId),
  );
  const best = fit[0];
  return best ? { ok: true, hostId: best.hostId, rejected } : { ok: false, rejected };
}

/** One line per rejected host: `host-b: not-live (no heartbeat ...); memory (...)`. */
export function refusalText(rejected: readonly RejectedHost[]): string {
  if (!rejected.length) return 'no host is registered';
  return rejected
    .map((r) => `${r.hostId}: ${r.reasons.map((x) => `${x.code} (${x.detail})`).join('; ')}`)
    .join(' | ');
}
