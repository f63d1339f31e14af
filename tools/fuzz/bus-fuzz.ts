import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ErrorCodes,
  GuestErrorCodes,
  HostErrorCodes,
  KeyBrokerErrorCodes,
  CheckpointErrorCodes,
  VmLifecycleErrorCodes,
  natsPermissionsFor,
  OPERATOR,
  SERVICES,
  STREAMS,
  subjects,
  type ServiceName,
  type SignerName,
} from '@ccm/contracts';
import { loadTrustStore, type Identity, type TrustStore } from '@ccm/keys';
import {
  ask,
  bytesOf,
  codeOf,
  consumerBacklog,
  deadLetters,
  pollUntil,
  publishToStream,
  rawAs,
  RawNatsError,
  sealed,
  startServiceProcess,
  startTestStack,
  type DeadLetter,
  type RawNatsClient,
  type ServiceProcess,
  type TestStack,
} from '@ccm/testing';
import fc from 'fast-check';
import { killVmProcesses } from '@ccm/qmp';
import {
  ALL_SIGNERS,
  contractSubjects,
  pingSubject,
  wiringFromLog,
  type ContractSubject,
  type WiredHandler,
  FUZZ_TOKEN,
} from './contract-subjects.js';
import {
  buildFuzzMessage,
  fuzzCases,
  knownBadInputs,
  subjectMatches,
  type FuzzCase,
} from './fuzz-messages.js';

/** The host the fuzzed host-agent serves and the VM the fuzzed guest-agent runs in. */
export const FUZZ_HOST = 'fuzz-host';
export const FUZZ_VM = 'fuzz-vm';

/** Every typed error code a CCM reply may carry; INTERNAL is the one that is not a typed answer. */
export const TYPED_CODES: ReadonlySet<string> = new Set(
  [
    ErrorCodes,
    HostErrorCodes,
    GuestErrorCodes,
    KeyBrokerErrorCodes,
    CheckpointErrorCodes,
    VmLifecycleErrorCodes,
  ]
    .flatMap((codes) => Object.values(codes) as string[])
    .filter((c) => c !== ErrorCodes.Internal),
);

/** Codes that say a stream message was refused before its handler ran: parked at its first delivery. */
const REFUSALS =
  /^(VALIDATION_FAILED|MALFORMED_MESSAGE|SIGNATURE_MISSING|SIGNATURE_INVALID|UNKNOWN_SIGNER|UNAUTHORIZED|MISADDRESSED|STALE|REPLAYED)\b/;

/** Verbs whose valid cases leave workloads running (guest containers, host VMs). */
const STARTS_WORK = ['run-container', 'launch', 'prepare-incoming'];

/** A fuzzed subject and who sends to it. */
export interface FuzzTarget extends ContractSubject {
  sender: SignerName;
  /** The consumers that read it (stream subjects), first the one its contract names. */
  consumers: WiredHandler[];
  /** Whether its handler checks the envelope type against the subject (every request handler does). */
  typeChecked: boolean;
}

/** Outcomes by subject and code, and every finding that breaks the contract of a typed answer. */
export class FuzzTally {
  readonly bySubject = new Map<string, Map<string, number>>();
  readonly byCode = new Map<string, number>();
  /** INTERNAL, an untyped code, no reply, or a message that should have been refused but was taken. */
  readonly findings: string[] = [];
  outcomes = 0;

  count(subject: string, code: string, n = 1): void {
    if (n <= 0) return;
    this.outcomes += n;
    const m = this.bySubject.get(subject) ?? new Map<string, number>();
    m.set(code, (m.get(code) ?? 0) + n);
    this.bySubject.set(subject, m);
    this.byCode.set(code, (this.byCode.get(code) ?? 0) + n);
  }

  finding(subject: string, what: string, c?: FuzzCase): void {
    this.findings.push(`${subject}: ${what}${c ? ` <- ${describeCase(c)}` : ''}`);
  }

  /** A table of outcomes per subject and a line of totals per code. */
  report(): string {
    const lines = [...this.bySubject]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(
        ([subject, codes]) =>
          `${subject.padEnd(52)} ${[...codes]
            .sort(([, a], [, b]) => b - a)
            .map(([c, n]) => `${c}=${n}`)
            .join(' ')}`,
      );
    const totals = [...this.byCode]
      .sort(([, a], [, b]) => b - a)
      .map(([c, n]) => `${c}=${n}`)
      .join(' ');
    return [...lines, `total ${this.outcomes} outcomes: ${totals}`].join('\n');
  }
}

function describeCase(c: FuzzCase): string {
  const text = JSON.stringify(c.payload) ?? String(c.payload);
  return `envelope ${c.envelope}, text ${c.text}${c.text === 'deep' ? ` ${c.depth}` : ''}, payload ${text.slice(0, 200)}`;
}

/** Every CCM service as its own process on one test stack, and what each wired at boot. */
export interface FuzzStack {
  stack: TestStack;
  trust: TrustStore;
  procs: Map<ServiceName, ServiceProcess>;
  wiring: WiredHandler[];
  /** Contract subjects some running service handles, with the sender picked for each. */
  targets: FuzzTarget[];
  /** Contract subjects no running service handles (their service does not implement them yet). */
  unserved: ContractSubject[];
  /** Handlers whose subject libs/contracts does not name (a contract gap). */
  uncontracted: WiredHandler[];
  client(signer: SignerName): Promise<{ raw: RawNatsClient; identity: Identity }>;
  /** `GET /health` status of every service process (0 when it does not answer). */
  health(): Promise<Record<string, number>>;
  /** Services that exited since they started. */
  exited(): ServiceName[];
  stop(): Promise<void>;
}

/**
 * Starts a test stack (host-agent identity pinned to {@link FUZZ_HOST}) and every service from dist/
 * as its own process, two at a time (this machine has two cores), and reads each one's wiring.
 */
export async function startFuzzStack(): Promise<FuzzStack> {
  const stack = await startTestStack({ hostIds: [FUZZ_HOST] });
  const runRoot = await mkdtemp(join(tmpdir(), 'ccm-fuzz-'));
  const procs = new Map<ServiceName, ServiceProcess>();
  const clients = new Map<SignerName, { raw: RawNatsClient; identity: Identity }>();
  const stop = async () => {
    for (const { raw } of clients.values()) raw.close();
    await Promise.allSettled([...procs.values()].map((p) => p.stop('SIGKILL')));
    await killVmProcesses(runRoot).catch(() => undefined);
    await stack.stop();
    await rm(runRoot, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < SERVICES.length; i += 2) {
      const batch = await Promise.all(
        SERVICES.slice(i, i + 2).map((service) =>
          startServiceProcess(
            service,
            stack.env({
              CCM_INSTANCE_ID: `${service}-fuzz`,
              // `log` level: the wiring lines name every handler and who may send to it.
              CCM_LOG_LEVEL: 'log',
              CCM_HOST_ID: FUZZ_HOST,
              CCM_VM_ID: FUZZ_VM,
              CCM_HYPERVISOR: 'sim',
              CCM_SEV: 'off',
              CCM_RUN_DIR: join(runRoot, FUZZ_HOST),
            }),
            { readyTimeoutMs: 90_000 },
          ),
        ),
      );
      for (const p of batch) procs.set(p.app, p);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const trust = await loadTrustStore(stack.keysDir);
  const wiring = [...procs].flatMap(([service, p]) => wiringFromLog(service, p.lines));
  const contract = contractSubjects(FUZZ_HOST, FUZZ_VM);
  const targets: FuzzTarget[] = [];
  const unserved: ContractSubject[] = [];
  for (const c of contract) {
    const handlers =
      c.kind === 'request'
        ? wiring.filter((w) => w.kind === 'request' && w.subject === c.subject)
        : wiring
            .filter(
              (w) => w.kind === 'consumer' && w.stream === c.stream && subjectMatches(w.subject, c.subject),
            )
            // The consumer of this very subject first; catch-all readers (`ccm.evt.>`) after.
            .sort((a, b) => b.subject.split('.').length - a.subject.split('.').length);
    if (handlers.length === 0) {
      unserved.push(c);
      continue;
    }
    const allow = handlers[0].allow;
    targets.push({
      ...c,
      sender: senderFor(c.subject, allow),
      consumers: c.kind === 'stream' ? handlers : [],
      typeChecked: c.kind === 'request' || handlers.some((h) => h.subject === c.subject),
    });
  }
  // Valid cases of these start sim containers and VMs that keep running (and dirtying memory) until
  // the stack stops: fuzzed last, they do not slow every subject after them on a two-core machine.
  const startsWork = (t: FuzzTarget) => STARTS_WORK.some((verb) => t.subject.endsWith(`.${verb}`));
  targets.sort((a, b) => Number(startsWork(a)) - Number(startsWork(b)));
  const uncontracted = wiring.filter((w) =>
    w.kind === 'request'
      ? !contract.some((c) => c.subject === w.subject)
      : !contract.some((c) => c.kind === 'stream' && subjectMatches(w.subject, c.subject)),
  );
  return {
    stack,
    trust,
    procs,
    wiring,
    targets,
    unserved,
    uncontracted,
    client: async (signer) => {
      let c = clients.get(signer);
      if (!c) {
        const scope = signer === 'host-agent' ? FUZZ_HOST : undefined;
        c = { raw: await rawAs(stack, signer, scope), identity: await stack.identity(signer, scope) };
        clients.set(signer, c);
      }
      return c;
    },
    health: async () => {
      const out: Record<string, number> = {};
      for (const [service, p] of procs) {
        out[service] = await fetch(`http://127.0.0.1:${p.httpPort}/health`)
          .then((r) => r.status)
          .catch(() => 0);
      }
      return out;
    },
    exited: () =>
      [...procs].filter(([, p]) => p.child.exitCode !== null || p.child.signalCode !== null).map(([s]) => s),
    stop,
  };
}

/** The first of the signers a handler takes (all when it names none) whose NATS user may publish `subject`. */
export function senderFor(subject: string, allow?: readonly SignerName[]): SignerName {
  const found = (allow ?? ALL_SIGNERS).find((s) =>
    natsPermissionsFor(s, s === 'host-agent' ? { hostId: FUZZ_HOST } : {}).publish.some((p) =>
      subjectMatches(p, subject),
    ),
  );
  if (!found) throw new Error(`no identity ${allow ? `of ${allow.join(', ')} ` : ''}may publish ${subject}`);
  return found;
}

/** The cases for one target: issue 8's known bad inputs first, then `runs` generated from its schema. */
export function casesFor(target: ContractSubject, runs: number, seed: number): FuzzCase[] {
  const generated = runs > 0 ? fc.sample(fuzzCases(target.schema), { numRuns: runs, seed }) : [];
  return [...knownBadInputs(target.schema, seed), ...generated];
}

/**
 * Sends every case to a request target and checks each reply: a typed error or `ok`, never INTERNAL,
 * an unknown code or silence; a case every receiver must refuse is never `ok`.
 */
export async function fuzzRequest(
  fz: FuzzStack,
  target: FuzzTarget,
  cases: readonly FuzzCase[],
  tally: FuzzTally,
  opts: { timeoutMs?: number; parallel?: number } = {},
): Promise<void> {
  const { raw, identity } = await fz.client(target.sender);
  const one = async (c: FuzzCase) => {
    const m = buildFuzzMessage(c, identity, target.subject, { typeChecked: target.typeChecked });
    let code: string;
    try {
      const { reply } = await ask(raw, fz.trust, target.subject, m.bytes, opts.timeoutMs ?? 10_000);
      code = codeOf(reply);
    } catch (err) {
      code = err instanceof RawNatsError && /no responders/.test(err.message) ? 'NO_RESPONDERS' : 'NO_REPLY';
      tally.finding(target.subject, `${code}: ${(err as Error).message}`, c);
    }
    tally.count(target.subject, code);
    if (code === ErrorCodes.Internal) tally.finding(target.subject, 'INTERNAL', c);
    else if (code !== 'ok' && !TYPED_CODES.has(code) && !code.startsWith('NO_'))
      tally.finding(target.subject, `untyped code ${code}`, c);
    if (m.refused && code === 'ok')
      tally.finding(target.subject, 'taken, but every receiver must refuse it', c);
  };
  const parallel = opts.parallel ?? 8;
  for (let i = 0; i < cases.length; i += parallel) await Promise.all(cases.slice(i, i + parallel).map(one));
}

/**
 * Publishes every case to a stream target, waits until its consumers have taken them all, and checks
 * what they parked: never as INTERNAL or "handler failed", every refusal at its first delivery, and
 * every message all receivers must refuse parked by the consumer its contract names.
 */
export async function fuzzStream(
  fz: FuzzStack,
  target: FuzzTarget,
  cases: readonly FuzzCase[],
  tally: FuzzTally,
  opts: { settleMs?: number } = {},
): Promise<void> {
  const { raw, identity } = await fz.client(target.sender);
  const sent = new Map<number, FuzzCase>();
  const refused = new Set<number>();
  for (const c of cases) {
    const subject = streamSubjectFor(target, c);
    const m = buildFuzzMessage(c, identity, subject, {
      typeChecked: target.typeChecked,
      lateAccepted: target.stream === 'events',
    });
    const ack = await publishToStream(raw, subject, m.bytes, m.msgId);
    if (ack.duplicate) continue;
    sent.set(ack.seq, c);
    if (m.refused) refused.add(ack.seq);
  }
  // Each service's own identity may read its consumers' state; the operator may read CCM_DLQ.
  const { raw: operator } = await fz.client(OPERATOR);
  const stream = STREAMS[target.stream!].name;
  for (const [i, consumer] of target.consumers.entries()) {
    const dlq = subjects.dlq(consumer.service, consumer.durable!);
    const ours = async () =>
      (await deadLetters(operator, dlq)).filter((d) => sent.has(Number(d.headers['Ccm-Dlq-Stream-Seq'])));
    const mustPark = i === 0 ? refused : new Set<number>();
    let parked: DeadLetter[];
    try {
      ({ parked } = await pollUntil(
        `${consumer.durable} to take ${sent.size} fuzzed messages`,
        async () => ({
          backlog: await consumerBacklog((await fz.client(consumer.service)).raw, stream, consumer.durable!),
          parked: await ours(),
        }),
        ({ backlog, parked: p }) => {
          const seqs = new Set(p.map((d) => Number(d.headers['Ccm-Dlq-Stream-Seq'])));
          return backlog.pending === 0 && backlog.ackPending === 0 && [...mustPark].every((s) => seqs.has(s));
        },
        { timeoutMs: opts.settleMs ?? 30_000, intervalMs: 200 },
      ));
    } catch (err) {
      tally.finding(target.subject, `${consumer.durable} did not settle: ${(err as Error).message}`);
      parked = await ours();
    }
    const parkedSeqs = new Set<number>();
    for (const d of parked) {
      const seq = Number(d.headers['Ccm-Dlq-Stream-Seq']);
      if (parkedSeqs.has(seq)) continue;
      parkedSeqs.add(seq);
      const reason = d.headers['Ccm-Dlq-Reason'] ?? '';
      const code = /^[A-Z_]+\b/.exec(reason)?.[0] ?? 'handler failed';
      tally.count(`${target.subject} (${consumer.durable})`, `parked ${code}`);
      if (/^INTERNAL|handler failed/.test(reason) || code === 'handler failed')
        tally.finding(target.subject, `${consumer.durable} parked #${seq}: ${reason}`, sent.get(seq));
      if (REFUSALS.test(reason) && d.headers['Ccm-Dlq-Deliveries'] !== '1')
        tally.finding(
          target.subject,
          `${consumer.durable} parked #${seq} after ${d.headers['Ccm-Dlq-Deliveries']} deliveries: ${reason}`,
          sent.get(seq),
        );
    }
    for (const seq of mustPark) {
      if (!parkedSeqs.has(seq))
        tally.finding(target.subject, `${consumer.durable} did not park #${seq}`, sent.get(seq));
    }
    const taken = [...sent.keys()].filter((s) => !parkedSeqs.has(s)).length;
    tally.count(`${target.subject} (${consumer.durable})`, 'taken', taken);
  }
}

/**
 * Where a stream case is published: a progress report goes on its own migration's subject when its
 * migration id is a subject token (so it reaches the handler past the subject check), else on the
 * contract's example subject.
 */
function streamSubjectFor(target: FuzzTarget, c: FuzzCase): string {
  const id = (c.payload as { migrationId?: unknown } | null)?.migrationId;
  const token = typeof id === 'string' && /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/.test(id);
  return token && target.subject.includes(`.${FUZZ_TOKEN}.`)
    ? target.subject.replace(`.${FUZZ_TOKEN}.`, `.${id}.`)
    : target.subject;
}

/** A signed ping to every service after the fuzzing: each must answer `ok`. */
export async function pingEveryService(fz: FuzzStack): Promise<Record<string, string>> {
  const { raw, identity } = await fz.client(OPERATOR);
  const out: Record<string, string> = {};
  for (const service of fz.procs.keys()) {
    const subject = pingSubject(service, FUZZ_HOST, FUZZ_VM);
    try {
      const { reply } = await ask(
        raw,
        fz.trust,
        subject,
        bytesOf(sealed(identity, subject, { message: 'after' })),
      );
      out[service] = codeOf(reply);
    } catch (err) {
      out[service] = (err as Error).message;
    }
  }
  return out;
}
