import { ErrorCodes, isCcmError, isFinalMigrationPhase, type MigrationDetail } from '@ccm/contracts';
import { type CliIo } from '../io.js';
import { type Connection } from '../context.js';
import { ExitCode } from '../errors.js';
import { Follower, type FollowEnd, type FollowedEvent } from './follow.js';
import { detailView, eventLine, summaryTable } from './format.js';
import { buildMigrateRequest, publishMigrate, type MigrateArgs } from './migrate.js';
import { getMigration, listMigrations, publishCancel } from './migrations.js';

/** Flags the migration commands read. */
export interface MigrationFlags extends MigrateArgs {
  follow?: boolean;
  phase?: string;
  host?: string;
  limit?: string;
  cursor?: string;
  json: boolean;
  timeoutMs: number;
}

/** The exit code of a migration that ended in `phase`. */
export function exitFor(end: FollowEnd): number {
  if (end.cancelRefused || end.phase === 'Rejected') return ExitCode.Refused;
  return end.phase === 'Succeeded' ? ExitCode.Ok : ExitCode.NotSucceeded;
}

/** Validates `ccm migrate` flags before any connection is made. */
export const checkMigrate = (f: MigrationFlags) => buildMigrateRequest(f);

/** `ccm migrate <workload> --from H --to H [...] [--follow]`. */
export async function migrateCommand(conn: Connection, f: MigrationFlags, io: CliIo): Promise<number> {
  const { request, key } = buildMigrateRequest(f);
  const sent = await publishMigrate(conn, request, key);
  io.out(
    f.json
      ? `${JSON.stringify(sent)}\n`
      : `migration ${sent.migrationId} requested: ${request.kind} ${request.workload} ${request.sourceHost} → ${request.targetHost} (priority ${request.priority}, idempotency key ${key})\n`,
  );
  if (!f.follow) return ExitCode.Ok;
  // The whole story, from the migration's first event: the follower reads them from CCM_EVENTS.
  const known = await lookUp(conn, sent.migrationId, f, io);
  return follow(conn, sent.migrationId, known, f, io, { afterSeq: 0 });
}

/** `ccm cancel <id> [--reason R] [--follow]`. */
export async function cancelCommand(
  conn: Connection,
  id: string | undefined,
  f: MigrationFlags,
  io: CliIo,
): Promise<number> {
  // Looked up before the cancel is sent, so following starts with the first event the cancel brings.
  const before = f.follow && id ? await lookUp(conn, id, f, io) : undefined;
  await publishCancel(conn, id, f.reason);
  io.out(f.json ? `${JSON.stringify({ cancelRequested: id })}\n` : `cancel of ${id} requested\n`);
  if (!f.follow || !id) return ExitCode.Ok;
  return follow(conn, id, before, f, io, { afterSeq: before?.eventSeq ?? 0, stopOnCancelRefused: true });
}

/** The migration as the coordinator has it, or undefined while none knows it (the request waits). */
async function lookUp(
  conn: Connection,
  id: string,
  f: MigrationFlags,
  io: CliIo,
): Promise<MigrationDetail | undefined> {
  try {
    return await getMigration(conn, id, f.timeoutMs);
  } catch (err) {
    if (!isCcmError(err, ErrorCodes.NotFound) && !f.json) {
      io.err(
        `ccm: no coordinator answered yet (${(err as Error).message}); the request waits in JetStream\n`,
      );
    }
    return undefined;
  }
}

async function follow(
  conn: Connection,
  id: string,
  known: MigrationDetail | undefined,
  f: MigrationFlags,
  io: CliIo,
  o: { afterSeq: number; stopOnCancelRefused?: boolean },
): Promise<number> {
  if (known && isFinalMigrationPhase(known.phase)) {
    const end = { phase: known.phase, reason: known.reason ?? '' };
    io.out(f.json ? `${JSON.stringify(end)}\n` : `${known.id} already ended ${known.phase}: ${end.reason}\n`);
    return exitFor(end);
  }
  const show = (e: FollowedEvent) => {
    if (f.json) return io.out(`${JSON.stringify({ event: e.name, ...e.data })}\n`);
    const line = eventLine(e);
    if (line) io.out(`${line}\n`);
  };
  const end = await new Follower(conn, id).run(show, o);
  return exitFor(end);
}

/** `ccm migrations [--phase P] [--host H] [--limit N] [--cursor C]`. */
export async function listCommand(conn: Connection, f: MigrationFlags, io: CliIo): Promise<number> {
  const page = await listMigrations(conn, f, f.timeoutMs);
  if (f.json) {
    io.out(`${JSON.stringify(page)}\n`);
  } else {
    io.out(page.items.length ? `${summaryTable(page.items)}\n` : 'no migrations\n');
    if (page.nextCursor) io.out(`more: ccm migrations --cursor ${page.nextCursor}\n`);
  }
  return ExitCode.Ok;
}

/** `ccm migration <id>`. */
export async function showCommand(
  conn: Connection,
  id: string | undefined,
  f: MigrationFlags,
  io: CliIo,
): Promise<number> {
  const m = await getMigration(conn, id, f.timeoutMs);
  io.out(f.json ? `${JSON.stringify(m)}\n` : `${detailView(m)}\n`);
  return ExitCode.Ok;
}
