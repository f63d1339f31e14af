import { randomUUID } from 'node:crypto';
import {
  LaunchVmReplySchema,
  LaunchVmRequestSchema,
  ListHostsReplySchema,
  ListVmsReplySchema,
  ListVmsRequestSchema,
  VM_LIFECYCLE_VERBS,
  vmLifecycleSubject,
  type HostRecord,
  type LaunchVmReply,
  type LaunchVmRequest,
  type VmLifecycleVerb,
  type VmRecord,
} from '@ccm/contracts';
import { signedRequest } from '@ccm/messaging';
import { type z } from 'zod';
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

/** One signed request to the vm-lifecycle as the CLI's identity (a command needs an idempotency key). */
function ask<S extends z.ZodType>(
  conn: Connection,
  verb: VmLifecycleVerb,
  data: unknown,
  reply: S,
  timeoutMs: number,
  idempotencyKey?: string,
): Promise<z.infer<S>> {
  return signedRequest(conn.nc, conn.identity, conn.trust, vmLifecycleSubject(verb), data, reply, {
    timeoutMs,
    ...(idempotencyKey ? { idempotencyKey } : {}),
  });
}

/** `ccm hosts [--json]`. */
export async function hostsCommand(
  conn: Connection,
  f: { json: boolean; timeoutMs: number },
  io: CliIo,
): Promise<number> {
  const r = await ask(conn, VM_LIFECYCLE_VERBS.listHosts, {}, ListHostsReplySchema, f.timeoutMs);
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
  const r = await ask(conn, VM_LIFECYCLE_VERBS.listVms, q.data, ListVmsReplySchema, f.timeoutMs);
  if (f.json) io.out(`${JSON.stringify(r)}\n`);
  else io.out(r.vms.length ? `${vmsTable(r.vms)}\n` : 'no VMs\n');
  return ExitCode.Ok;
}

/** What `ccm vm launch` prints: the VM, its host and attested launch, its overlay address. */
export function vmLaunchedText(r: LaunchVmReply): string {
  const digest = r.launchDigest ? `, launch digest ${r.launchDigest.slice(0, 16)}…` : '';
  const overlay = r.overlay
    ? `admitted to ${r.overlay.overlayId} as ${r.overlay.nodeIp} (release log #${r.overlay.decision})\n`
    : '';
  return `${r.vmId} runs on ${r.hostId} (attested launch ${r.launchSessionId}${digest})\n${overlay}`;
}

/** Flags of `ccm vm launch`. */
export interface VmLaunchFlags {
  host?: string;
  workload?: string[];
  vm?: string;
  overlay?: string;
}

/** `ccm vm launch`'s request, checked before connecting: a usage error names the bad flag. */
export function checkVmLaunch(rest: readonly string[], f: VmLaunchFlags): LaunchVmRequest {
  if (rest[0] !== 'launch') throw usageError(`ccm vm takes launch, got ${JSON.stringify(rest[0] ?? '')}`);
  if (rest.length > 1)
    throw usageError(`ccm vm launch takes no positional argument, got ${JSON.stringify(rest[1])}`);
  if (!f.host) throw usageError('ccm vm launch needs --host HOST');
  if (!f.workload?.length) throw usageError('ccm vm launch needs at least one --workload ID');
  const req = LaunchVmRequestSchema.safeParse({
    host: f.host,
    workloads: f.workload,
    ...(f.vm !== undefined ? { vmId: f.vm } : {}),
    ...(f.overlay !== undefined ? { overlayId: f.overlay } : {}),
  });
  if (!req.success) {
    const flag = (p: PropertyKey | undefined) =>
      ({ host: '--host', workloads: '--workload', vmId: '--vm', overlayId: '--overlay' })[String(p)] ??
      String(p);
    throw usageError(
      `invalid launch: ${req.error.issues.map((i) => `${flag(i.path[0])}: ${i.message}`).join('; ')}`,
    );
  }
  return req.data;
}

/** `ccm vm launch --host H --workload W... [--vm ID] [--overlay O] [--json]`: prints the launched VM. */
export async function vmLaunchCommand(
  conn: Connection,
  req: LaunchVmRequest,
  f: { json: boolean; timeoutMs: number; idempotencyKey?: string },
  io: CliIo,
): Promise<number> {
  // A resend of the same key (--idempotency-key) is answered alike; the VM id makes a launch idempotent anyway.
  const key = f.idempotencyKey ?? randomUUID();
  const r = await ask(conn, VM_LIFECYCLE_VERBS.launchVm, req, LaunchVmReplySchema, f.timeoutMs, key);
  io.out(f.json ? `${JSON.stringify(r)}\n` : vmLaunchedText(r));
  return ExitCode.Ok;
}
