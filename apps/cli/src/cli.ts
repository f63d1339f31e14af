import { parseArgs } from 'node:util';
import { GUEST_OWNER, isCcmError } from '@ccm/contracts';
import {
  cancelCommand,
  checkMigrate,
  listCommand,
  migrateCommand,
  showCommand,
  type MigrationFlags,
} from './commands/migration-commands.js';
import {
  AUDIT_SUBCOMMANDS,
  exportCommand,
  replayCommand,
  verifyCommand,
  verifyFileCommand,
  type AuditFlags,
} from './audit/audit-commands.js';
import { ping } from './commands/ping.js';
import {
  certCommand,
  checkOwnerCommand,
  guestCommand,
  policyCommand,
  type OwnerFlags,
} from './commands/policy.js';
import { checkVmLaunch, hostsCommand, vmLaunchCommand, vmsCommand } from './commands/registry.js';
import { checkContainerRun, containerRunCommand } from './commands/container.js';
import { connect } from './context.js';
import { CliError, ExitCode, fromCcmError, usageError } from './errors.js';
import { type CliIo } from './io.js';

const COMMANDS = [
  'ping',
  'migrate',
  'migrations',
  'migration',
  'cancel',
  'audit',
  'hosts',
  'vms',
  'vm',
  'container',
  'policy',
  'guest',
  'cert',
];
/** Commands of the guest owner: they speak with the guest-owner key (ccm-keys' owner identity). */
const OWNER_COMMANDS = ['policy', 'guest', 'cert'];

const HELP = `ccm: Confidential Container Migration

usage: ccm <command> [flags]

commands:
  ping <service> [--host ID] [--vm ID] [--message TEXT]   one signed round trip to a service
  migrate <workload> --from HOST --to HOST                 request a migration; prints its id
      [--kind container|vm] [--priority user|maintenance|evacuation]
      [--reason TEXT] [--idempotency-key KEY] [--follow]   --follow prints progress until it ends
      [--vm ID]                                            a container's VM on the source host
      [--allow-postcopy]                                   a VM may switch to post-copy if pre-copy stalls
  migrations [--phase PHASE] [--host HOST]                 list migrations, newest first
      [--limit N] [--cursor C]
  migration <id>                                           one migration with its step history
  cancel <id> [--reason TEXT] [--follow]                   cancel (refused past the point of no return)
  hosts                                                    registered hosts: liveness, SEV, TCB, capacity
  vms [--host HOST] [--phase PHASE] [--limit N]            confidential VMs: desired and observed phase
  vm launch --host HOST --workload ID [--workload ID]...   an attested launch of a workload's first VM
      [--vm ID] [--overlay ID] [--idempotency-key KEY]     --overlay admits the attested guest to it
      (default --timeout-ms 120000: the guest must boot)
  container run <id> --vm VM [--overlay ID] [--port N]     the guest-agent in VM starts a counting container;
                                                           --overlay gives it a /32 there (port 8080)
      (default --timeout-ms 120000: a guest's first container start)
  audit replay <id>                                        rebuild a migration from CCM_EVENTS alone
  audit verify [--since T]                                 check every migration (T: ISO time or 30m, 12h, 7d)
  audit export <id> [--out FILE]                           write a signed transcript for offline checks
  audit verify-file FILE [--trust trust.json]              check a transcript without NATS
      audit commands exit 6 on a broken record, and on events aged out of CCM_EVENTS
      unless --allow-aged-out (the gap is still printed)

guest owner (with the guest-owner key of --keys-dir, not the operator's):
  policy list                                              the latest version of each workload class
  policy show <class> [--version N]                        one policy document
  policy put <file.json> [--expected-version N]            a new version (default: over the current one)
  guest revoke <vmId> --reason TEXT                        refuse this guest's evidence from now on
  cert list [--kind vcek|vlek|cek]                         the key-broker's certificate cache
  cert put <file> --kind vcek|vlek|cek [--chip-id HEX]     cache a VCEK/VLEK (DER/PEM) or a CEK (GET_ID hex)
  help                                                     this text

common flags:
  --nats-url URL    NATS server (default: CCM_NATS_URL, else the local stack)
  --keys-dir DIR    keys dir with the operator key (default: CCM_KEYS_DIR, else the local stack)
  --timeout-ms N    how long to wait for a reply (default 5000)
  --json            machine-readable output
`;

export type { CliIo } from './io.js';

/** Runs one `ccm` invocation; returns the exit code. Never throws. */
export async function runCli(
  argv: string[],
  io: CliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) },
): Promise<number> {
  let json = argv.includes('--json');
  let keyName = 'operator';
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: argv,
        allowPositionals: true,
        strict: true,
        options: {
          'nats-url': { type: 'string' },
          'keys-dir': { type: 'string' },
          'timeout-ms': { type: 'string' },
          host: { type: 'string' },
          vm: { type: 'string' },
          message: { type: 'string' },
          from: { type: 'string' },
          to: { type: 'string' },
          kind: { type: 'string' },
          priority: { type: 'string' },
          reason: { type: 'string' },
          'idempotency-key': { type: 'string' },
          follow: { type: 'boolean' },
          phase: { type: 'string' },
          limit: { type: 'string' },
          cursor: { type: 'string' },
          since: { type: 'string' },
          out: { type: 'string' },
          trust: { type: 'string' },
          'allow-aged-out': { type: 'boolean' },
          'allow-postcopy': { type: 'boolean' },
          version: { type: 'string' },
          'expected-version': { type: 'string' },
          'chip-id': { type: 'string' },
          workload: { type: 'string', multiple: true },
          overlay: { type: 'string' },
          port: { type: 'string' },
          json: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
        },
      });
    } catch (err) {
      throw usageError((err as Error).message);
    }
    const { values, positionals } = parsed;
    json = values.json ?? false;
    const [command, ...rest] = positionals;
    if (!command || command === 'help' || values.help) {
      io.out(HELP);
      return command || values.help ? ExitCode.Ok : ExitCode.Usage;
    }
    const timeoutMs =
      values['timeout-ms'] === undefined
        ? command === 'vm' || command === 'container'
          ? 120_000
          : 5_000
        : Number(values['timeout-ms']);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000) {
      throw usageError(
        `--timeout-ms must be a whole number of milliseconds from 1 to 600000, got ${JSON.stringify(values['timeout-ms'])}`,
      );
    }
    if (!COMMANDS.includes(command)) throw usageError(`unknown command ${JSON.stringify(command)}`);
    const flags: MigrationFlags = {
      workload: rest[0],
      from: values.from,
      to: values.to,
      kind: values.kind,
      priority: values.priority,
      reason: values.reason,
      idempotencyKey: values['idempotency-key'],
      vm: values.vm,
      allowPostcopy: values['allow-postcopy'],
      follow: values.follow,
      phase: values.phase,
      host: values.host,
      limit: values.limit,
      cursor: values.cursor,
      json,
      timeoutMs,
    };
    if (command === 'migrate') checkMigrate(flags);
    const launch =
      command === 'vm'
        ? checkVmLaunch(rest, {
            host: values.host,
            workload: values.workload,
            vm: values.vm,
            overlay: values.overlay,
          })
        : undefined;
    const container =
      command === 'container'
        ? checkContainerRun(rest, { vm: values.vm, overlay: values.overlay, port: values.port })
        : undefined;
    const audit: AuditFlags = {
      json,
      timeoutMs,
      since: values.since,
      out: values.out,
      trust: values.trust,
      allowAgedOut: values['allow-aged-out'] ?? false,
    };
    const sub = rest[0];
    if (command === 'audit') {
      if (!AUDIT_SUBCOMMANDS.includes(sub as never))
        throw usageError(`ccm audit takes ${AUDIT_SUBCOMMANDS.join(', ')}, got ${JSON.stringify(sub ?? '')}`);
      if (sub === 'verify-file') return await verifyFileCommand(rest[1], audit, io);
    }
    const owner: OwnerFlags = {
      json,
      timeoutMs,
      version: values.version,
      expectedVersion: values['expected-version'],
      reason: values.reason,
      kind: values.kind,
      chipId: values['chip-id'],
    };
    const asOwner = OWNER_COMMANDS.includes(command);
    if (asOwner) checkOwnerCommand(command as 'policy' | 'guest' | 'cert', rest, owner);
    keyName = asOwner ? GUEST_OWNER : 'operator';
    const conn = await connect({
      natsUrl: values['nats-url'],
      keysDir: values['keys-dir'],
      ...(asOwner ? { as: GUEST_OWNER } : {}),
    });
    try {
      switch (command) {
        case 'policy':
          return await policyCommand(conn, rest, owner, io);
        case 'guest':
          return await guestCommand(conn, rest, owner, io);
        case 'cert':
          return await certCommand(conn, rest, owner, io);
        case 'migrate':
          return await migrateCommand(conn, flags, io);
        case 'migrations':
          return await listCommand(conn, flags, io);
        case 'migration':
          return await showCommand(conn, rest[0], flags, io);
        case 'cancel':
          return await cancelCommand(conn, rest[0], flags, io);
        case 'hosts':
          return await hostsCommand(conn, { json, timeoutMs }, io);
        case 'vms':
          return await vmsCommand(
            conn,
            { json, timeoutMs, host: values.host, phase: values.phase, limit: values.limit },
            io,
          );
        case 'vm':
          return await vmLaunchCommand(
            conn,
            launch!,
            { json, timeoutMs, idempotencyKey: values['idempotency-key'] },
            io,
          );
        case 'container':
          return await containerRunCommand(conn, container!, { json, timeoutMs }, io);
        case 'audit':
          if (sub === 'replay') return await replayCommand(conn, rest[1], audit, io);
          if (sub === 'export') return await exportCommand(conn, rest[1], audit, io);
          return await verifyCommand(conn, audit, io);
      }
      const r = await ping(conn, {
        service: rest[0],
        host: values.host,
        vm: values.vm,
        message: values.message,
        timeoutMs,
      });
      io.out(
        json
          ? `${JSON.stringify(r)}\n`
          : `${r.service} (${r.instanceId}) answered in ${r.latencyMs} ms; ping #${r.count}\n`,
      );
    } finally {
      await conn.close();
    }
    return ExitCode.Ok;
  } catch (e) {
    const err =
      e instanceof CliError
        ? e
        : isCcmError(e)
          ? fromCcmError(e, keyName)
          : new CliError(ExitCode.Internal, 'INTERNAL', (e as Error).message);
    io.err(
      json
        ? `${JSON.stringify({ error: { code: err.code, message: err.message, suggestion: err.suggestion } })}\n`
        : `ccm: ${err.message} [${err.code}]\n${err.suggestion ? `  hint: ${err.suggestion}\n` : ''}`,
    );
    return err.exitCode;
  }
}
