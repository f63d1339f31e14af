/**
 * Orchestration benchmark: one container migration end to end on the real-participant sim stack, the
 * demo's set-up (tools/stack: nats-server, Postgres and every service as its own process; host-agents
 * on the simulated hypervisor with the software secure processor; a guest-agent inside each sim VM;
 * the overlay's sim driver) with the coordinator's own clocks (no scaling). It runs the container demo
 * flow (`ccm vm launch`, a counting container, `ccm migrate --follow`), then prints the blackout,
 * brownout, total time, each step's duration and the orchestration share.
 *
 * How the share is measured. Every service's messaging layer times each request it handles
 * (`ccm_message_handler_seconds`, on its /metrics): for a step command that is the participant's whole
 * work on it, from taking the message to sending the reply, including its data-plane calls (the
 * guest-agents' dumps and restores, the host-agents' launch, the key-broker's evidence requests). The
 * bench reads every service's /metrics before and after the migration; the participants' time is the
 * growth of that sum over the step commands of the migration (its steps run one at a time). The total
 * is the coordinator's own record, from taking the request (intake) to the saga's end; orchestration
 * is the rest: the coordinator (intake, admission, `admit`, applying replies, events) and NATS carrying
 * the commands and replies. Per step: the coordinator's attempt (sent to reply applied) beside the
 * serving participant's handler time; the difference is that step's orchestration.
 *
 * With `--qemu` it runs the demo's real flow instead (tools/demo/qemu-container.ts: QEMU guests under
 * TCG on the software secure processor, two hosts as network namespaces, runc and CRIU inside the
 * guests, kernel WireGuard driven by network-overlay, a TCP client on the container); it needs root.
 *
 * Run: `npm run bench:orchestration` (builds, then node dist/tools/bench/orchestration.bench.js
 * [--qemu] [--json]).
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  GET_MIGRATION_VERB,
  LIST_MIGRATIONS_VERB,
  MigrationDetailSchema,
  MigrationPageSchema,
  OPERATOR,
  subjects,
  type MigrationDetail,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { connectNats, signedRequest } from '@ccm/messaging';
import { killVmProcesses } from '@ccm/qmp';
import { onStopSignals } from '../run/stop-signals.js';
import { demoContainerMigration, simContainerSetup, stopSimGuests } from '../demo/container-migration.js';
import {
  qemuContainerSetup,
  qemuContainerUnavailable,
  type QemuContainerSetup,
} from '../demo/qemu-container.js';
import { startLocalStack, type LocalStack } from '../stack/stack.js';

const { values } = parseArgs({
  options: { json: { type: 'boolean' }, qemu: { type: 'boolean' } },
  strict: true,
});
const out = (m: string) => process.stdout.write(`${m}\n`);

/** The subject a step attempt's command went to (the coordinator's `verify` asks the overlay to probe). */
const subjectOf = (participant: string, command: string) =>
  command === 'verify-workload'
    ? subjects.cmd('network-overlay', 'probe-workload')
    : subjects.cmd(participant as Parameters<typeof subjects.cmd>[0], command);

/** Handler seconds and count per subject, summed over every service's /metrics. */
type HandlerTimes = Map<string, { seconds: number; count: number }>;

async function handlerTimes(stack: LocalStack): Promise<HandlerTimes> {
  const times: HandlerTimes = new Map();
  const line = /^ccm_message_handler_seconds_(sum|count)\{[^}]*\bsubject="([^"]+)"[^}]*\} (\S+)$/;
  for (const p of stack.services) {
    const text = await (await fetch(`${p.httpUrl}/metrics`)).text();
    for (const l of text.split('\n')) {
      const m = line.exec(l);
      if (!m) continue;
      const t = times.get(m[2]) ?? { seconds: 0, count: 0 };
      if (m[1] === 'sum') t.seconds += Number(m[3]);
      else t.count += Number(m[3]);
      times.set(m[2], t);
    }
  }
  return times;
}

/**
 * The coordinator's back-off inside a step: from each failed attempt's end to the next attempt's send
 * (the step's retry policy, e.g. VERIFY_RETRY). Nobody works then: it counts as orchestration, and is
 * printed apart so that a retried step is not read as the coordinator's or NATS's cost.
 */
function retryWaitMs(attempts: ReadonlyArray<{ sentAt: string; endedAt?: string }>): number {
  let ms = 0;
  for (let i = 1; i < attempts.length; i++) {
    const ended = attempts[i - 1].endedAt;
    if (ended) ms += Math.max(0, Date.parse(attempts[i].sentAt) - Date.parse(ended));
  }
  return ms;
}

const grew = (before: HandlerTimes, after: HandlerTimes, subject: string) => {
  const a = after.get(subject) ?? { seconds: 0, count: 0 };
  const b = before.get(subject) ?? { seconds: 0, count: 0 };
  return { ms: (a.seconds - b.seconds) * 1000, count: a.count - b.count };
};

const stateDir = await mkdtemp(join(tmpdir(), 'ccm-bench-orchestration-'));
const runRoot = join(stateDir, 'run');
let stack: LocalStack | undefined;
let qemu: QemuContainerSetup | undefined;
const children = new Set<ChildProcess>();
const demoLines: string[] = [];
let stopped: Promise<void> | undefined;
const stopEverything = (): Promise<void> =>
  (stopped ??= (async () => {
    for (const c of children) c.kill('SIGTERM');
    try {
      await stack?.stop();
    } finally {
      if (qemu) {
        await killVmProcesses(runRoot);
        qemu.close();
      } else await stopSimGuests(runRoot);
      await rm(stateDir, { recursive: true, force: true });
    }
  })());
const signals = onStopSignals('bench:orchestration', stopEverything);

let failure: string | undefined;
try {
  if (values.qemu) {
    const why = qemuContainerUnavailable();
    if (why) throw new Error(`--qemu cannot run here: ${why}`);
    qemu = await qemuContainerSetup(join(stateDir, 'qemu-container'), runRoot, join(stateDir, 'keys'), (m) =>
      demoLines.push(m),
    );
  }
  const flow = qemu ?? (await simContainerSetup(join(stateDir, 'sim-container'), runRoot));
  stack = await startLocalStack({
    stateDir,
    hosts: ['host-a', 'host-b'],
    hostEnv: flow.hostEnv,
    serviceEnv: flow.serviceEnv,
    ...(qemu ? { listen: qemu.listen, hostNetns: qemu.hostNetns } : {}),
  });
  await qemu?.writeAppDisk(stack);
  const before = await handlerTimes(stack);
  await demoContainerMigration({
    stack,
    setup: flow,
    say: (m) => demoLines.push(m),
    children,
    real: qemu !== undefined,
  });
  const after = await handlerTimes(stack);

  const identity = await loadIdentity(stack.keysDir, OPERATOR);
  const trust = await loadTrustStore(stack.keysDir);
  const nc = await connectNats([stack.natsUrl], identity, 'ccm-bench-orchestration');
  let detail: MigrationDetail;
  try {
    const ask = <S extends Parameters<typeof signedRequest>[5]>(verb: string, data: unknown, schema: S) =>
      signedRequest(nc, identity, trust, subjects.cmd('saga-coordinator', verb), data, schema, {
        timeoutMs: 10_000,
      });
    const page = await ask(LIST_MIGRATIONS_VERB, {}, MigrationPageSchema);
    if (page.items.length !== 1) throw new Error(`expected one migration, found ${page.items.length}`);
    detail = await ask(GET_MIGRATION_VERB, { migrationId: page.items[0].id }, MigrationDetailSchema);
  } finally {
    await nc.close();
  }
  if (detail.phase !== 'Succeeded' || !detail.endedAt)
    throw new Error(`the migration ended ${detail.phase}: ${detail.reason ?? ''}`);

  const totalMs = Date.parse(detail.endedAt) - Date.parse(detail.createdAt);
  const steps = detail.steps.map((s) => {
    const actions = s.attempts.filter((x) => x.kind === 'action');
    const a = actions.at(-1)!;
    const local = a.participant === 'saga-coordinator' && a.command !== 'verify-workload';
    const handled = local ? { ms: 0, count: 0 } : grew(before, after, subjectOf(a.participant, a.command));
    return {
      step: s.name,
      participant: a.command === 'verify-workload' ? 'network-overlay' : a.participant,
      attempts: s.attempts.length,
      // every attempt's time: the participant's handler time covers every delivery of every attempt
      stepMs: actions.reduce((t, x) => t + (x.durationMs ?? 0), 0),
      retryWaitMs: retryWaitMs(actions),
      participantMs: handled.ms,
      handled: handled.count,
    };
  });
  const participantMs = steps.reduce((t, s) => t + s.participantMs, 0);
  const orchestrationMs = totalMs - participantMs;
  const retryWaitTotalMs = steps.reduce((t, s) => t + s.retryWaitMs, 0);
  const f = detail.figures ?? {};
  const of = (step: string) => steps.find((s) => s.step === step)?.participantMs ?? 0;
  const report = {
    migrationId: detail.id,
    totalMs,
    blackoutMs: f.blackoutMs,
    frozenMs: f.frozenMs,
    brownoutMs: f.brownoutMs,
    cutOverMs: f.cutOverMs,
    participantMs,
    orchestrationMs,
    orchestrationShare: orchestrationMs / totalMs,
    retryWaitMs: retryWaitTotalMs,
    steps,
  };
  if (values.json) out(JSON.stringify(report, null, 2));
  else {
    const n = (x: number | null | undefined) => (typeof x === 'number' ? `${x.toFixed(0)} ms` : 'n/a');
    out(
      `orchestration benchmark: one container migration host-a → host-b ${qemu ? 'between QEMU guests (TCG, runc and CRIU inside)' : 'on the sim drivers'} (${detail.id})`,
    );
    out(`  total (intake to end)     ${n(totalMs)}`);
    out(`  blackout                  ${n(f.blackoutMs)} (container frozen ${n(f.frozenMs)})`);
    out(`  brownout                  ${n(f.brownoutMs)} (cut-over ${n(f.cutOverMs)})`);
    out(`  participants' work        ${n(participantMs)} (step handlers, data plane included)`);
    out(
      `  orchestration             ${n(orchestrationMs)} = ${((100 * orchestrationMs) / totalMs).toFixed(1)} % of the total (coordinator + NATS; goal ≤ 2 %)`,
    );
    out(
      `    of which retry waits    ${n(retryWaitTotalMs)} (the coordinator's back-off between attempts of a failed step)`,
    );
    out(
      `  blackout vs freeze-dump + restore handler time + 50 ms: ${n(f.blackoutMs)} vs ${n(of('freeze-dump') + of('restore') + 50)}`,
    );
    out(`\n  step               served by             step (coordinator)  participant  orchestration`);
    for (const s of steps) {
      out(
        `  ${s.step.padEnd(18)} ${s.participant.padEnd(21)} ${n(s.stepMs).padStart(18)}  ${n(s.participantMs).padStart(11)}  ${n(s.stepMs - s.participantMs).padStart(13)}` +
          (s.handled > 1 || s.attempts > 1 ? `  (${s.attempts} attempt(s), ${s.handled} deliveries)` : ''),
      );
    }
    const between = totalMs - steps.reduce((t, s) => t + s.stepMs + s.retryWaitMs, 0);
    out(`  between steps (intake, admission, applying replies, next send): ${n(between)}`);
    out(`  retry waits (back-off between a failed attempt and the next):   ${n(retryWaitTotalMs)}`);
  }
} catch (err) {
  failure = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ');
  for (const l of demoLines) process.stderr.write(`${l}\n`);
} finally {
  await stopEverything().catch((err: unknown) => {
    failure ??= `stopping failed: ${String(err)}`;
  });
}
const signalled = signals.exitCode();
signals.dispose();
if (failure && !signalled) process.stderr.write(`bench:orchestration failed: ${failure}\n`);
process.exit(signalled ?? (failure ? 1 : 0));
