import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import {
  HOST_COMMANDS,
  hostCommandSubject,
  TRANSFER_EVENTS,
  transferEventSubject,
  type HostVerb,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore } from '@ccm/keys';
import { openEnvelope, signedRequest } from '@ccm/messaging';
import { startTestStack, type TestStack } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { type z } from 'zod';
import { startServiceProcess, type ServiceProcess } from '../stack/service-process.js';
import { type Contender, type GuestPair } from './qmp-migrate.contenders.js';

const SRC = 'bench-a';
const DST = 'bench-b';

interface AgentPair extends GuestPair {
  vmId: string;
  uri: string;
}

/**
 * The host-agent as a contender: two agent processes (QEMU driver) on one NATS and Postgres; the
 * source VM is launched through agent A, the destination prepared through agent B, and the migration
 * runs by `start-migration` over NATS. Its wall time ends when the agent's `completed` event arrives,
 * so it includes the agent's polling, its database writes and the outbox relay.
 */
export function hostAgentContender(): Contender<AgentPair> {
  let stack: TestStack;
  let nc: NatsConnection;
  let runRoot: string;
  const agents: ServiceProcess[] = [];
  let send: <V extends HostVerb>(
    host: string,
    verb: V,
    data: z.input<(typeof HOST_COMMANDS)[V]['request']>,
  ) => Promise<z.infer<(typeof HOST_COMMANDS)[V]['reply']>>;
  let n = 0;

  return {
    name: 'host-agent over NATS',
    async setup() {
      stack = await startTestStack({ hostIds: [SRC, DST] });
      runRoot = await mkdtemp(join(tmpdir(), 'ccm-bench-agents-'));
      for (const host of [SRC, DST]) {
        agents.push(
          await startServiceProcess(
            'host-agent',
            stack.env({
              CCM_HOST_ID: host,
              CCM_HYPERVISOR: 'qemu',
              CCM_SEV: 'off',
              CCM_RUN_DIR: join(runRoot, host),
              CCM_OUTBOX_POLL_MS: '20',
              CCM_LOG_LEVEL: 'log', // the launcher waits for the `ready` line
            }),
            { readyTimeoutMs: 60_000 },
          ),
        );
      }
      nc = await stack.connectAs('operator');
      const [identity, trust] = await Promise.all([
        loadIdentity(stack.keysDir, 'operator'),
        loadTrustStore(stack.keysDir),
      ]);
      send = (host, verb, data) =>
        signedRequest(nc, identity, trust, hostCommandSubject(host, verb), data, HOST_COMMANDS[verb].reply, {
          idempotencyKey: randomUUID(),
          timeoutMs: 60_000,
        }) as Promise<z.infer<(typeof HOST_COMMANDS)[typeof verb]['reply']>>;
    },
    async teardown() {
      await Promise.allSettled(agents.map((a) => a.stop('SIGTERM')));
      await nc?.close();
      await stack?.stop();
      if (runRoot) await rm(runRoot, { recursive: true, force: true });
    },
    async startPair(spec) {
      const vmId = `bench-${++n}`;
      const vmSpec = {
        memoryMiB: spec.memoryMiB ?? 512,
        kernel: spec.kernel,
        initrd: spec.initrd,
        cmdline: spec.append,
      };
      const src = await send(SRC, 'launch', { vmId, spec: vmSpec });
      const dst = await send(DST, 'prepare-incoming', { vmId, spec: vmSpec });
      return {
        vmId,
        uri: dst.uri,
        srcSerial: join(src.vm.runDir, 'serial.log'),
        dstSerial: join(dst.vm.runDir, 'serial.log'),
        stop: async () => {
          await Promise.allSettled([send(SRC, 'destroy', { vmId }), send(DST, 'destroy', { vmId })]);
        },
      };
    },
    async migrate(pair, limits) {
      const migrationId = `bench-m-${randomUUID().slice(0, 8)}`;
      const trust = await loadTrustStore(stack.keysDir);
      const end = nc.subscribe(transferEventSubject(migrationId, 'completed'), { max: 1 });
      const failed = nc.subscribe(transferEventSubject(migrationId, 'failed'), { max: 1 });
      const t0 = Date.now();
      await send(SRC, 'start-migration', { migrationId, vmId: pair.vmId, uri: pair.uri, ...limits });
      const outcome = await Promise.race([
        (async () => {
          for await (const m of end)
            return openEnvelope(m.data, trust, TRANSFER_EVENTS.completed, { subject: m.subject }).data;
          throw new Error('subscription ended');
        })(),
        (async () => {
          for await (const m of failed)
            throw new Error(
              openEnvelope(m.data, trust, TRANSFER_EVENTS.failed, { subject: m.subject }).data.reason,
            );
          return new Promise<never>(() => undefined);
        })(),
      ]);
      const wallMs = Date.now() - t0;
      end.unsubscribe();
      failed.unsubscribe();
      const f = outcome.figures;
      return {
        wallMs,
        figures: {
          status: f.status,
          totalTimeMs: f.totalTimeMs,
          downtimeMs: f.downtimeMs,
          setupTimeMs: f.setupTimeMs,
          transferredBytes: f.transferredBytes,
          remainingBytes: 0,
          passes: f.passes,
          mbps: f.mbps,
        },
      };
    },
  };
}
