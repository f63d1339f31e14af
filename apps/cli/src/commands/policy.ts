import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  CachedCertificateSchema,
  GetPolicyReplySchema,
  ListCertificatesReplySchema,
  isCcmError,
  KEY_BROKER_VERBS,
  KeyBrokerErrorCodes,
  keyBrokerSubject,
  ListPoliciesReplySchema,
  OwnerPolicySchema,
  parseSafeJson,
  PutPolicyReplySchema,
  RevokeGuestReplySchema,
  type OwnerPolicy,
} from '@ccm/contracts';
import { signedRequest } from '@ccm/messaging';
import { type z } from 'zod';
import { type Connection } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import { type CliIo } from '../io.js';
import { table } from './registry.js';

export const POLICY_SUBCOMMANDS = ['list', 'show', 'put'] as const;
export const GUEST_SUBCOMMANDS = ['revoke'] as const;
export const CERT_SUBCOMMANDS = ['list', 'put'] as const;
const CERT_KINDS = ['vcek', 'vlek', 'cek'];

export interface OwnerFlags {
  json: boolean;
  timeoutMs: number;
  version?: string;
  expectedVersion?: string;
  reason?: string;
  kind?: string;
  chipId?: string;
}

/** A whole number ≥ `min` given as `--name`, or undefined when the flag is absent. */
function count(name: string, raw: string | undefined, min: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw usageError(`--${name} must be a whole number from ${min}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** Checks a `ccm policy …` or `ccm guest …` command line before anything connects. */
export function checkOwnerCommand(command: 'policy' | 'guest' | 'cert', args: string[], f: OwnerFlags): void {
  const [sub, arg] = args;
  if (command === 'cert') {
    if (!CERT_SUBCOMMANDS.includes(sub as never))
      throw usageError(`ccm cert takes ${CERT_SUBCOMMANDS.join(', ')}, got ${JSON.stringify(sub ?? '')}`);
    if (f.kind !== undefined && !CERT_KINDS.includes(f.kind))
      throw usageError(`--kind must be vcek, vlek or cek, got ${JSON.stringify(f.kind)}`);
    if (sub === 'put') {
      if (!arg)
        throw usageError('ccm cert put needs a certificate file', 'ccm cert put <file> --kind vcek|vlek|cek');
      if (!f.kind) throw usageError('ccm cert put needs --kind vcek|vlek|cek');
      if (f.kind === 'cek' && !/^[0-9a-fA-F]{128}$/.test(f.chipId ?? ''))
        throw usageError("a CEK needs --chip-id: the chip's GET_ID value, 64 bytes of hex");
    }
    return;
  }
  if (command === 'guest') {
    if (!GUEST_SUBCOMMANDS.includes(sub as never))
      throw usageError(`ccm guest takes ${GUEST_SUBCOMMANDS.join(', ')}, got ${JSON.stringify(sub ?? '')}`);
    if (!arg) throw usageError('ccm guest revoke needs the VM id', 'ccm guest revoke <vmId> --reason TEXT');
    if (!f.reason?.trim()) throw usageError('ccm guest revoke needs --reason TEXT (it is logged)');
    return;
  }
  if (!POLICY_SUBCOMMANDS.includes(sub as never))
    throw usageError(`ccm policy takes ${POLICY_SUBCOMMANDS.join(', ')}, got ${JSON.stringify(sub ?? '')}`);
  if (sub === 'show' && !arg) throw usageError('ccm policy show needs a workload class');
  if (sub === 'put' && !arg) throw usageError('ccm policy put needs a policy file (JSON)');
  count('version', f.version, 1);
  count('expected-version', f.expectedVersion, 0);
}

const ask = <S extends z.ZodType>(conn: Connection, verb: string, data: unknown, reply: S, f: OwnerFlags) =>
  signedRequest(conn.nc, conn.identity, conn.trust, keyBrokerSubject(verb), data, reply, {
    timeoutMs: f.timeoutMs,
    idempotencyKey: randomUUID(),
  });

/** The policy document in `file`, checked against the contract before it is sent. */
async function readPolicy(file: string): Promise<OwnerPolicy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(ExitCode.Usage, 'BAD_FILE', `cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseSafeJson(text);
  } catch (err) {
    throw new CliError(ExitCode.Usage, 'BAD_FILE', `${file} is not JSON: ${(err as Error).message}`);
  }
  const p = OwnerPolicySchema.safeParse(doc);
  if (!p.success) {
    const issues = p.error.issues.map((i) => `${i.path.join('.') || '(document)'}: ${i.message}`);
    throw new CliError(ExitCode.Usage, 'BAD_FILE', `${file} is not an owner policy: ${issues.join('; ')}`);
  }
  return p.data;
}

/**
 * `ccm policy list|show|put` as the guest owner: `list` the latest version of each workload class,
 * `show <class> [--version N]` one document, `put <file> [--expected-version N]` a new version (by
 * default over the version read just before; give it to refuse a concurrent change).
 */
export async function policyCommand(
  conn: Connection,
  args: string[],
  f: OwnerFlags,
  io: CliIo,
): Promise<number> {
  const [sub, arg] = args;
  const print = (value: unknown, text: string) => io.out(f.json ? `${JSON.stringify(value)}\n` : `${text}\n`);
  if (sub === 'list') {
    const r = await ask(conn, KEY_BROKER_VERBS.listPolicies, {}, ListPoliciesReplySchema, f);
    print(
      r,
      r.policies.length
        ? table(
            ['CLASS', 'VERSION', 'WORKLOADS', 'CHANGED BY', 'CHANGED AT', 'DIGEST'],
            r.policies.map((p) => [
              p.workloadClass,
              String(p.version),
              p.workloads.join(',') || '-',
              p.changedBy,
              p.changedAt,
              p.digest.slice(0, 16),
            ]),
          )
        : 'no policies',
    );
    return ExitCode.Ok;
  }
  if (sub === 'show') {
    const version = count('version', f.version, 1);
    const r = await ask(
      conn,
      KEY_BROKER_VERBS.getPolicy,
      { workloadClass: arg, ...(version ? { version } : {}) },
      GetPolicyReplySchema,
      f,
    );
    print(
      r,
      `${r.workloadClass} v${r.version} (${r.digest}) by ${r.changedBy} at ${r.changedAt}\n${JSON.stringify(r.policy, null, 2)}`,
    );
    return ExitCode.Ok;
  }
  const policy = await readPolicy(arg);
  let expectedVersion = count('expected-version', f.expectedVersion, 0);
  if (expectedVersion === undefined) {
    expectedVersion = await ask(
      conn,
      KEY_BROKER_VERBS.getPolicy,
      { workloadClass: policy.workloadClass },
      GetPolicyReplySchema,
      f,
    ).then(
      (r) => r.version,
      (err: unknown) => {
        if (isCcmError(err) && err.code === KeyBrokerErrorCodes.PolicyNotFound) return 0;
        throw err;
      },
    );
  }
  const r = await ask(conn, KEY_BROKER_VERBS.putPolicy, { policy, expectedVersion }, PutPolicyReplySchema, f);
  print(r, `${r.workloadClass} is now at version ${r.version} (${r.digest})`);
  return ExitCode.Ok;
}

/** `ccm guest revoke <vmId> --reason TEXT` as the guest owner: its evidence is refused from now on. */
export async function guestCommand(
  conn: Connection,
  args: string[],
  f: OwnerFlags,
  io: CliIo,
): Promise<number> {
  const r = await ask(
    conn,
    KEY_BROKER_VERBS.revokeGuest,
    { vmId: args[1], reason: f.reason },
    RevokeGuestReplySchema,
    f,
  );
  io.out(
    f.json
      ? `${JSON.stringify(r)}\n`
      : `${r.vmId} revoked at ${r.revokedAt}; keys dropped: ${r.keysDropped.join(', ') || 'none'}\n`,
  );
  return ExitCode.Ok;
}

/**
 * `ccm cert list [--kind K]` and `ccm cert put <file> --kind vcek|vlek|cek [--chip-id HEX]`: the
 * key-broker's certificate cache, which the guest owner fills with what it fetched from AMD's KDS (a VCEK
 * or its cloud provider's VLEK as DER or PEM, a CEK in SEV's 2084-byte format).
 */
export async function certCommand(
  conn: Connection,
  args: string[],
  f: OwnerFlags,
  io: CliIo,
): Promise<number> {
  const [sub, file] = args;
  if (sub === 'list') {
    const r = await ask(
      conn,
      KEY_BROKER_VERBS.listCertificates,
      f.kind ? { kind: f.kind } : {},
      ListCertificatesReplySchema,
      f,
    );
    io.out(
      f.json
        ? `${JSON.stringify(r)}\n`
        : r.certificates.length
          ? `${table(
              ['KIND', 'LINE', 'SHA-256', 'ADDED BY', 'KDS URL'],
              r.certificates.map((c) => [
                c.kind,
                c.productLine ?? '-',
                c.sha256.slice(0, 16),
                c.addedBy,
                c.kdsUrl,
              ]),
            )}\n`
          : 'no certificates\n',
    );
    return ExitCode.Ok;
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new CliError(ExitCode.Usage, 'BAD_FILE', `cannot read ${file}: ${(err as Error).message}`);
  }
  const text = bytes.toString('latin1');
  if (text.includes('-----BEGIN CERTIFICATE-----')) {
    bytes = Buffer.from(text.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, ''), 'base64');
  }
  const data =
    f.kind === 'cek'
      ? { kind: 'cek', chipId: f.chipId!.toLowerCase(), certificate: bytes.toString('base64') }
      : { kind: f.kind, der: bytes.toString('base64') };
  const r = await ask(conn, KEY_BROKER_VERBS.putCertificate, data, CachedCertificateSchema, f);
  io.out(f.json ? `${JSON.stringify(r)}\n` : `${r.kind} cached under ${r.kdsUrl}\n`);
  return ExitCode.Ok;
}
