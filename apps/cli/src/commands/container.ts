import { randomUUID } from 'node:crypto';
import {
  ContainerIdSchema,
  ContainerInfoSchema,
  IdSchema,
  GUEST_VERBS,
  OVERLAY_VERBS,
  subjects,
  WorkloadAddressSchema,
  type ContainerInfo,
} from '@ccm/contracts';
import { signedRequest } from '@ccm/messaging';
import { type z } from 'zod';
import { type Connection } from '../context.js';
import { ExitCode, usageError } from '../errors.js';
import { type CliIo } from '../io.js';

/** The container `ccm container run` starts: the demo's counting workload (4 MiB, 1000 pages dirtied a second). */
const PAGES = 1024;
const DIRTY_PAGES_PER_SEC = 1000;
const DEFAULT_PORT = 8080;

export interface ContainerRun {
  id: string;
  vmId: string;
  overlay?: string;
  port: number;
}

/** Checks `ccm container run <id> --vm VM [--overlay ID] [--port N]` before connecting. */
export function checkContainerRun(
  rest: readonly string[],
  f: { vm?: string; overlay?: string; port?: string },
): ContainerRun {
  if (rest[0] !== 'run') throw usageError(`ccm container takes run, got ${JSON.stringify(rest[0] ?? '')}`);
  if (!rest[1] || rest.length > 2) throw usageError('ccm container run takes one container id');
  if (!f.vm) throw usageError('ccm container run needs --vm VM (the VM `ccm vm launch` printed)');
  const port = f.port === undefined ? DEFAULT_PORT : Number(f.port);
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    throw usageError(`--port must be a TCP port from 1 to 65535, got ${JSON.stringify(f.port)}`);
  if (f.port !== undefined && !f.overlay)
    throw usageError('--port is the port on the overlay: it needs --overlay ID');
  for (const [what, v] of [
    ['container id', rest[1]],
    ['--vm', f.vm],
    ['--overlay', f.overlay],
  ] as const) {
    const r = (what === 'container id' ? ContainerIdSchema : IdSchema).safeParse(v);
    if (v !== undefined && !r.success)
      throw usageError(`invalid ${what} ${JSON.stringify(v)}: ${r.error.issues[0].message}`);
  }
  return { id: rest[1], vmId: f.vm, port, ...(f.overlay ? { overlay: f.overlay } : {}) };
}

const send = <S extends z.ZodType>(
  conn: Connection,
  subject: string,
  data: unknown,
  reply: S,
  timeoutMs: number,
) =>
  signedRequest(conn.nc, conn.identity, conn.trust, subject, data, reply, {
    timeoutMs,
    idempotencyKey: randomUUID(),
  });

/**
 * `ccm container run`: with --overlay, the workload's /32 on the overlay first (network-overlay
 * `assign-workload`, what `ccm migrate` moves at the cut-over), then the guest-agent inside the VM starts
 * the counting container, serving on that address and port.
 */
export async function containerRunCommand(
  conn: Connection,
  r: ContainerRun,
  f: { json: boolean; timeoutMs: number },
  io: CliIo,
): Promise<number> {
  const address = r.overlay
    ? await send(
        conn,
        subjects.cmd('network-overlay', OVERLAY_VERBS.assignWorkload),
        { overlayId: r.overlay, workloadId: r.id, vmId: r.vmId, port: r.port },
        WorkloadAddressSchema,
        f.timeoutMs,
      )
    : undefined;
  const info: ContainerInfo = await send(
    conn,
    subjects.guestCmd(r.vmId, GUEST_VERBS.runContainer),
    {
      id: r.id,
      pages: PAGES,
      dirtyPagesPerSec: DIRTY_PAGES_PER_SEC,
      ...(address ? { network: { address: address.ip, port: address.port } } : {}),
    },
    ContainerInfoSchema,
    f.timeoutMs,
  );
  io.out(
    f.json
      ? `${JSON.stringify({ ...info, vmId: r.vmId, ...(address ? { overlay: address } : {}) })}\n`
      : `container ${info.id} ${info.state} in ${r.vmId} (counter ${info.counter})${address ? `; overlay ${address.overlayId} ${address.ip}:${address.port}` : ''}\n`,
  );
  return ExitCode.Ok;
}
