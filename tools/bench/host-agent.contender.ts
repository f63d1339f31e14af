import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { startServiceProcess, startTestStack, type ServiceProcess, type TestStack } from '@ccm/testing';
import { killVmProcesses } from '@ccm/qmp';
import { agentClient, type AgentClient } from './agent-client.js';
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
  let stack: TestStack | undefined;
  let client: AgentClient | undefined;
  let runRoot: string | undefined;
  const agents: ServiceProcess[] = [];
  const send: AgentClient['send'] = (host, verb, data) => client!.send(host, verb, data);
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
      client = await agentClient(stack);
    },
    async teardown() {
      await Promise.allSettled(agents.map((a) => a.stop('SIGTERM')));
      // Agents leave their VMs running when they stop: end whatever a failed run left.
      if (runRoot) await killVmProcesses(runRoot);
      await client?.close();
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
      const { figures: f, wallMs } = await client!.migrate(
        SRC,
        { migrationId, vmId: pair.vmId, uri: pair.uri, ...limits },
        120_000,
      );
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
