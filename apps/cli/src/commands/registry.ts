import {
  ListHostsReplySchema,
  ListVmsReplySchema,
  ListVmsRequestSchema,
  VM_LIFECYCLE_VERBS,
  vmLifecycleSubject,
  type HostRecord,
  type VmRecord,
} from '@ccm/contracts';
import { signedRequest } from '@ccm/messaging';
import { type Connection } from '../context.js';
import { usageError } from '../errors.js';
import { ExitCode } from '../errors.js';
import { type CliIo } from '../io.js';

/** Columns padded to their widest cell. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

const ago = (iso: string, now: number): string => {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
};

const tcb = (h: HostRecord) => (h.tcb ? `${h.tcb.apiMajor}.${h.tcb.apiMinor}.${h.tcb.build}` : '-');
const sev = (h: HostRecord) =>
  h.capabilities.sevSnp ? 'snp' : h.capabilities.sevEs ? 'sev-es' : h.capabilities.sev ? 'sev' : 'none';

/** `ccm hosts`: one line per registered host. */
export function hostsTable(hosts: readonly HostRecord[], now = Date.now()): string {
  return table(
    ['HOST', 'LIVE', 'LAST SEEN', 'SEV', 'MODE', 'TCB', 'DRIVER', 'MEMORY MiB (USED/TOTAL)', 'vCPUs', 'VMs'],
    hosts.map((h) => [
      h.hostId,
      h.live ? 'yes' : 'NO',
      ago(h.lastSeenAt, now),
      sev(h),
      h.sevMode,
      tcb(h),
      `${h.capabilities.driver}/${h.capabilities.accelerator}`,
      `${h.allocatedMemoryMiB}/${h.capabilities.memoryMiB}`,
      `${h.allocatedCpus}/${h.capabilities.cpus}`,
      Object.entries(h.vms)
        .map(([phase, n]) => `${n} ${phase}`)
        .join(', ') || '-',
    ]),
  );
}

/** `ccm vms`: one line per VM record. */
export function vmsTable(vms: readonly VmRecord[]): string {
  return table(
    ['VM', 'HOST', 'DESIRED', 'OBSERVED', 'SINCE', 'MEMORY MiB', 'WORKLOADS', 'PROVISIONED BY'],
    vms.map((v) => [
      v.vmId,
      v.hostId,
      v.desired ?? '-',
      v.observed ?? '-',
      v.phaseHistory.at(-1)?.at ?? '-',
      v.spec ? String(v.spec.memoryMiB) : '-',
      v.workloads.join(',') || '-',
      v.provisionedBy ?? '-',
    ]),
  );
}

/** `ccm hosts [--json]`. */
export async function hostsCommand(
  conn: Connection,
  f: { json: boolean; timeoutMs: number },
  io: CliIo,
): Promise<number> {
  const r = await signedRequest(
    conn.nc,
    conn.identity,
    conn.trust,
    vmLifecycleSubject(VM_LIFECYCLE_VERBS.listHosts),
    {},
    ListHostsReplySchema,
    { timeoutMs: f.timeoutMs },
  );
  if (f.json) io.out(`${JSON.stringify(r)}\n`);
  else io.out(r.hosts.length ? `${hostsTable(r.hosts)}\n` : 'no hosts registered\n');
  return ExitCode.Ok;
}

/** `ccm vms [--host H] [--phase P] [--limit N] [--json]`. */
export async function vmsCommand(
  conn: Connection,
  f: { json: boolean; timeoutMs: number; host?: string; phase?: string; limit?: string },
  io: CliIo,
): Promise<number> {
  const { host, phase, limit } = f;
  const q = ListVmsRequestSchema.safeParse(
    Object.fromEntries(Object.entries({ host, phase, limit }).filter(([, v]) => v !== undefined)),
  );
  if (!q.success) {
    throw usageError(
      `invalid query: ${q.error.issues.map((i) => `--${String(i.path[0] ?? 'query')}: ${i.message}`).join('; ')}`,
    );
  }
  const r = await signedRequest(
    conn.nc,
    conn.identity,
    conn.trust,
    vmLifecycleSubject(VM_LIFECYCLE_VERBS.listVms),
    q.data,
    ListVmsReplySchema,
    { timeoutMs: f.timeoutMs },
  );
  if (f.json) io.out(`${JSON.stringify(r)}\n`);
  else io.out(r.vms.length ? `${vmsTable(r.vms)}\n` : 'no VMs\n');
  return ExitCode.Ok;
}
