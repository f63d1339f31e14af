import {
  DescribeRequestSchema,
  ReplySchema,
  STEP_COMMANDS,
  progressSubjects,
  stepCommandContract,
  type DataPlaneProgress,
  type DescribeReply,
  type ErrorPayload,
  type Reply,
  type SignerName,
  type StepCommand,
} from '@ccm/contracts';
import { type Identity, type TrustStore } from '@ccm/keys';
import { encodeEnvelope, MemoryChains, openEnvelope, publisherName, sealEnvelope } from '@ccm/messaging';
import { jetstream } from '@nats-io/jetstream';
import { type Msg, type NatsConnection } from '@nats-io/transport-node';

/**
 * Scripted saga participants for tests and benchmarks: they answer the coordinator's step commands
 * over real NATS as key-broker, vm-lifecycle, network-overlay, container-checkpoint and every
 * host-agent, signing replies with those identities. Each command's payload is checked against its
 * contract. Like real participants they are idempotent: a repeated idempotency key gets the first
 * reply, and a new attempt of a (migration, step, kind) that already acted does not act again.
 */

/** What a participant does with one command. */
export type Behaviour =
  /** Act and reply success (after `delayMs`), with `result` or a plausible default reply. */
  | { kind: 'succeed'; result?: Record<string, unknown>; delayMs?: number }
  /** Reply with an error; `effect` says whether it acted first. */
  | { kind: 'fail'; retryable: boolean; effect: 'none' | 'maybe'; code?: string; message?: string }
  /** Never reply: the coordinator sees a timeout. `takeEffect`: it acted before going silent. */
  | { kind: 'hang'; takeEffect: boolean }
  /** Act, then reply only when `until` resolves. */
  | { kind: 'hold'; until: Promise<unknown> }
  /** Act and reply success twice to the same request. */
  | { kind: 'reply-twice' }
  /** Drop off NATS without replying (having acted or not) until `restart` is called. */
  | { kind: 'crash'; takeEffect: boolean }
  /**
   * Lose this delivery without replying (having acted or not), as a process that died with it and
   * came straight back: the next delivery of the same key is handled afresh.
   */
  | { kind: 'lose'; takeEffect: boolean };

/** One command as a participant received it. */
export interface ReceivedCommand {
  readonly participant: string;
  readonly verb: string;
  readonly subject: string;
  readonly key: string;
  readonly migrationId: string;
  readonly step: string;
  readonly kind: 'action' | 'compensation';
  readonly attempt: number;
  readonly payload: StepCommand;
  /** `performance.now()` on arrival. */
  readonly at: number;
  /** The first delivery of this idempotency key (false for a re-send of the same attempt). */
  readonly firstOfKey: boolean;
  /** How many deliveries of this idempotency key arrived, this one included. */
  readonly delivery: number;
}

/** One effect: the first time a participant acted for a (migration, step, kind). */
export interface Effect {
  readonly migrationId: string;
  readonly step: string;
  readonly kind: 'action' | 'compensation';
  readonly participant: string;
  readonly verb: string;
  readonly key: string;
}

export type Script = (cmd: ReceivedCommand) => Behaviour | undefined;

/** How scripted participants reach the stack (a TestStack provides all three). */
export interface ParticipantStack {
  connectAs(signer: SignerName): Promise<NatsConnection>;
  identity(signer: SignerName): Promise<Identity>;
  trust: TrustStore;
}

const SERVICES = [
  'key-broker',
  'vm-lifecycle',
  'network-overlay',
  'container-checkpoint',
  'host-agent',
] as const;
export type Svc = (typeof SERVICES)[number];

const subscription = (svc: Svc) => (svc === 'host-agent' ? 'ccm.cmd.host.*.>' : `ccm.cmd.${svc}.>`);

/** A plausible success reply for each verb, meeting its reply contract. */
export function defaultResult(verb: string, cmd: StepCommand): Record<string, unknown> {
  const short = cmd.migrationId.slice(-8);
  switch (verb) {
    case 'attest-platform':
      return { hostId: cmd.targetHost, platform: 'sev-snp', attestationId: `att-${short}` };
    case 'provision-vm':
      return { targetVmId: `vm-${short}` };
    case 'prepare-incoming':
      return { targetVmId: cmd.workload.id, incomingUri: 'tcp:10.77.0.3:49152' };
    case 'release-migration-key':
      return { keyId: `key-${short}` };
    case 'add-peer':
      return { peerId: `peer-${short}`, overlayIp: '10.77.0.9' };
    case 'pre-copy':
      return { rounds: 3, bytesSent: 64 << 20, converged: true };
    case 'freeze-dump':
      return { imageBytes: 8 << 20 };
    case 'cut-over':
      return { overlayIp: '10.77.0.9', cutOverMs: 3, brownoutMs: 12, sourceAnswered: false, peersUpdated: 2 };
    case 'probe-workload':
      return { answered: true, latencyMs: 1 };
    case 'open-transport-session':
      return {
        transportSessionId: `ts-${short}`,
        // Placeholder certificates: scripted hosts never run SEND_START on them.
        targetChain: { pdh: 'AA==', platCert: 'AA==', amdCert: 'AA==' },
        pdhSha256: '0'.repeat(64),
        attestationId: `att-${short}`,
      };
    case 'await-convergence':
      return { expectedDowntimeMs: 80, bytesTransferred: 512 << 20 };
    case 'switch-over':
      return { figures: SCRIPTED_FIGURES, sourceHeld: true };
    case 'verify-vm':
      return { alive: true, counterFrom: 1, counterTo: 2, waitedMs: 1 };
    default:
      return {};
  }
}

const SCRIPTED_FIGURES = {
  status: 'completed',
  totalTimeMs: 900,
  downtimeMs: 40,
  setupTimeMs: 2,
  transferredBytes: 512 << 20,
  passes: 3,
  mbps: 4000,
};

/**
 * The scripted host-agents' answer to the coordinator's `describe` at a VM's admission: the VM runs
 * on the source host with a small spec and a guest address lease.
 */
function describedVm(subject: string, vmId: string): DescribeReply {
  const hostId = subject.split('.')[3];
  const at = new Date().toISOString();
  return {
    hostId,
    vms: [
      {
        vmId,
        hostId,
        driver: 'sim',
        origin: 'local',
        phase: 'Running',
        spec: { memoryMiB: 32, cpus: 1 },
        guestNet: { address: '10.77.0.100', prefix: 24 },
        runDir: `/run/ccm/host-agent/${hostId}/vms/${vmId}`,
        createdAt: at,
        phaseChangedAt: at,
      },
    ],
    migrations: [],
  };
}

export class ScriptedParticipants {
  readonly received: ReceivedCommand[] = [];
  readonly effects: Effect[] = [];
  /** Commands whose payload broke its contract (should stay empty). */
  readonly invalid: Array<{ subject: string; error: string }> = [];
  private script: Script = () => undefined;
  private readonly plans = new Map<string, Script>();
  private readonly conns = new Map<Svc, NatsConnection>();
  private readonly ids = new Map<Svc, Identity>();
  private readonly chains = new Map<Svc, MemoryChains>();
  private readonly byKey = new Map<string, Promise<Reply | undefined>>();
  private readonly acted = new Map<string, Record<string, unknown>>();
  private readonly replied = new Map<string, number>();

  private constructor(private readonly stack: ParticipantStack) {}

  /**
   * Starts every scripted participant but those in `without` (e.g. `host-agent` when real host-agents
   * answer the host subjects).
   */
  static async start(
    stack: ParticipantStack,
    script?: Script,
    without: readonly Svc[] = [],
  ): Promise<ScriptedParticipants> {
    const p = new ScriptedParticipants(stack);
    if (script) p.script = script;
    for (const svc of SERVICES.filter((s) => !without.includes(s))) {
      p.ids.set(svc, await stack.identity(svc));
      await p.connect(svc);
    }
    return p;
  }

  /** Replaces the script (undefined answers → succeed at once). */
  setScript(script: Script): void {
    this.script = script;
  }

  /** Scripts one migration (its commands do not reach the general script). */
  plan(migrationId: string, script: Script): void {
    this.plans.set(migrationId, script);
  }

  /** Effects for one migration, in the order they happened. */
  effectsOf(migrationId: string): Effect[] {
    return this.effects.filter((e) => e.migrationId === migrationId);
  }

  /** Commands received for one migration, in order. */
  receivedFor(migrationId: string): ReceivedCommand[] {
    return this.received.filter((c) => c.migrationId === migrationId);
  }

  /** `performance.now()` when the first reply for an idempotency key was sent. */
  repliedAt(key: string): number | undefined {
    return this.replied.get(key);
  }

  /** Brings a crashed participant back. */
  async restart(svc: Svc): Promise<void> {
    if (!this.conns.get(svc)?.isClosed()) return;
    await this.connect(svc);
  }

  /** Publishes data-plane progress as container-checkpoint (`checkpoint`) or host-agent (`transfer`). */
  async publishProgress(via: 'checkpoint' | 'transfer', progress: DataPlaneProgress): Promise<void> {
    const svc: Svc = via === 'checkpoint' ? 'container-checkpoint' : 'host-agent';
    const subject = progressSubjects[via](progress.migrationId);
    // Like every publisher, each participant appends its events to its own chain for the migration.
    let chains = this.chains.get(svc);
    if (!chains) this.chains.set(svc, (chains = new MemoryChains(publisherName(svc, undefined, 'scripted'))));
    await chains.append(progress.migrationId, undefined, async (chain) => {
      const env = sealEnvelope(this.ids.get(svc)!, {
        natssubject: subject,
        type: `ccm.${via}.progressed`,
        data: progress,
        correlationid: progress.migrationId,
        chain,
      });
      await jetstream(this.conns.get(svc)!).publish(subject, encodeEnvelope(env), { msgID: env.id });
      return env;
    });
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.conns.values()].map((c) => c.close()));
  }

  private async connect(svc: Svc): Promise<void> {
    const nc = await this.stack.connectAs(svc);
    const sub = nc.subscribe(subscription(svc));
    this.conns.set(svc, nc);
    void (async () => {
      for await (const m of sub) void this.handle(svc, m);
    })();
  }

  private async handle(svc: Svc, m: Msg): Promise<void> {
    const verb = m.subject.split('.').at(-1)!;
    if (svc === 'host-agent' && verb === 'describe') return this.describe(m);
    const contract = stepCommandContract(svc, verb);
    if (!contract || !(verb in STEP_COMMANDS[svc])) return;
    let env;
    try {
      env = openEnvelope(m.data, this.stack.trust, contract.request, { subject: m.subject });
    } catch (err) {
      this.invalid.push({ subject: m.subject, error: (err as Error).message });
      return this.respond(svc, m, {
        ok: false,
        error: { code: 'VALIDATION_FAILED', retryable: false, message: (err as Error).message },
      });
    }
    const cmd = env.data;
    const key = env.idempotencykey ?? env.id;
    const first = !this.byKey.has(key);
    const received: ReceivedCommand = {
      participant: svc,
      verb,
      subject: m.subject,
      key,
      migrationId: cmd.migrationId,
      step: cmd.step,
      kind: cmd.kind,
      attempt: cmd.attempt,
      payload: cmd,
      at: performance.now(),
      firstOfKey: first,
      delivery: this.received.filter((r) => r.key === key).length + 1,
    };
    this.received.push(received);
    if (!first) {
      const reply = await this.byKey.get(key)!;
      if (reply) this.respond(svc, m, reply);
      return;
    }
    const pending = this.act(svc, received);
    this.byKey.set(
      key,
      pending.then((r) => r.reply),
    );
    const { reply, twice, forget } = await pending;
    // A crashed or lost run leaves no memory of the key: only the effect it stored stays.
    if (forget) this.byKey.delete(key);
    if (!reply) return;
    this.respond(svc, m, reply);
    this.replied.set(key, performance.now());
    if (twice) this.respond(svc, m, reply);
  }

  /** Runs the script for a first delivery; acts at most once per (migration, step, kind). */
  private async act(
    svc: Svc,
    c: ReceivedCommand,
  ): Promise<{ reply?: Reply; twice?: boolean; forget?: boolean }> {
    const b: Behaviour = (this.plans.get(c.migrationId) ?? this.script)(c) ?? { kind: 'succeed' };
    const done = (result: Record<string, unknown>): Reply => ({ ok: true, result });
    const effect = (): Record<string, unknown> => {
      const id = `${c.migrationId}:${c.step}:${c.kind}`;
      const earlier = this.acted.get(id);
      if (earlier) return earlier;
      const result = (b.kind === 'succeed' && b.result) || defaultResult(c.verb, c.payload);
      this.acted.set(id, result);
      this.effects.push({
        migrationId: c.migrationId,
        step: c.step,
        kind: c.kind,
        participant: svc,
        verb: c.verb,
        key: c.key,
      });
      return result;
    };
    switch (b.kind) {
      case 'succeed': {
        const result = effect();
        if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
        return { reply: done(result) };
      }
      case 'reply-twice':
        return { reply: done(effect()), twice: true };
      case 'hold': {
        const result = effect();
        await b.until;
        return { reply: done(result) };
      }
      case 'fail': {
        if (b.effect === 'maybe') effect();
        const error: ErrorPayload = {
          code: b.code ?? 'INJECTED_FAILURE',
          retryable: b.retryable,
          message: b.message ?? `${svc} ${c.verb} failed on purpose`,
          effect: b.effect,
        };
        return { reply: { ok: false, error } };
      }
      case 'hang':
        if (b.takeEffect) effect();
        return new Promise(() => undefined);
      case 'crash':
        if (b.takeEffect) effect();
        await this.conns.get(svc)!.close();
        return { forget: true };
      case 'lose':
        if (b.takeEffect) effect();
        return { forget: true };
    }
  }

  /** A host's `describe`: the VM asked for runs there (the coordinator reads it at admission). */
  private describe(m: Msg): void {
    try {
      const env = openEnvelope(m.data, this.stack.trust, DescribeRequestSchema, { subject: m.subject });
      this.respond('host-agent', m, { ok: true, result: describedVm(m.subject, env.data.vmId ?? 'vm') });
    } catch (err) {
      this.invalid.push({ subject: m.subject, error: (err as Error).message });
    }
  }

  private respond(svc: Svc, m: Msg, reply: Reply): void {
    const env = sealEnvelope(this.ids.get(svc)!, {
      natssubject: m.reply ?? '',
      type: `${m.subject}.reply`,
      causationid: requestId(m),
      data: ReplySchema.parse(reply),
    });
    try {
      m.respond(encodeEnvelope(env));
    } catch {
      // the connection went away (a crash): the coordinator sees a timeout
    }
  }
}

/** The id of the request envelope `m` carries (a reply names it as its cause), if it has one. */
function requestId(m: Msg): string | undefined {
  try {
    const id = (JSON.parse(new TextDecoder().decode(m.data)) as { id?: unknown }).id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}
