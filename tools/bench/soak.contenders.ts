import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  driveMigration,
  killVmProcesses,
  startQemu,
  type MigrationFigures,
  type QemuProcess,
} from '@ccm/qmp';
import { startServiceProcess, startTestStack, type ServiceProcess, type TestStack } from '@ccm/testing';
import { type BridgedHosts } from '../netns/bridged-hosts.js';
import { agentClient, type AgentClient } from './agent-client.js';

/**
 * The contenders of the soak benchmark (soak.bench.ts): each keeps one tiny guest running on one of
 * two hosts (network namespaces on a bridge) and moves it to the other host on request, its own way.
 */

export interface SoakGuest {
  /** Kernel, initrd, command line and memory: the same on both ends. */
  kernel: string;
  initrd: string;
  cmdline: string;
  memoryMiB: number;
}

export interface SoakLimits {
  downtimeLimitMs: number;
  maxBandwidthBytesPerSec: number;
  autoConverge: boolean;
}

/** One move: QEMU's figures and the serial consoles of both ends. */
export interface Move {
  figures: MigrationFigures;
  wallMs: number;
  srcSerial: string;
  dstSerial: string;
}

export interface SoakContender {
  name: string;
  /** Once per matrix cell: `qemu` is the binary both hosts run. */
  setup(net: BridgedHosts, qemu: string): Promise<void>;
  /** Ends every guest and whatever setup started. */
  teardown(): Promise<void>;
  /** Boots a fresh guest on `host`; returns its serial log. */
  boot(host: string, guest: SoakGuest): Promise<string>;
  /** Moves the guest from `from` to `to`; rejects when the migration does not complete. */
  move(from: string, to: string, guest: SoakGuest, limits: SoakLimits): Promise<Move>;
  /** Ends the guest wherever it is (after a loss or a failed move). */
  reset(): Promise<void>;
}

/** Two QEMUs per move, each in its host's namespace, driven by @ccm/qmp's driveMigration. */
export function bareQmpSoak(): SoakContender {
  let net: BridgedHosts;
  let binary: string;
  let root: string;
  let guestOn: { host: string; q: QemuProcess } | undefined;
  let n = 0;
  let closed = false;
  const start = (host: string, g: SoakGuest, incoming?: string) => {
    // After teardown (a signal's stop) the soak loop may still ask: start nothing more.
    if (closed) throw new Error('the bare QMP contender was torn down');
    return startQemu({
      binary,
      netns: net.hosts[host].ns,
      name: `soak-${host}`,
      runDir: join(root, `q${++n}`),
      kernel: g.kernel,
      initrd: g.initrd,
      append: g.cmdline,
      memoryMiB: g.memoryMiB,
      accel: 'tcg',
      incoming,
    });
  };
  const end = async (q: QemuProcess | undefined) => {
    await q?.kill({ graceMs: 1_000 }).catch(() => undefined);
  };
  return {
    name: 'bare QMP',
    async setup(hosts, qemu) {
      net = hosts;
      binary = qemu;
      closed = false;
      root = await mkdtemp(join(tmpdir(), 'ccm-soak-qmp-'));
    },
    async teardown() {
      closed = true;
      await this.reset();
      if (root) await rm(root, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined);
    },
    async boot(host, g) {
      await this.reset();
      const q = await start(host, g);
      guestOn = { host, q };
      return q.paths.serialLog;
    },
    async move(from, to, g, limits) {
      const src = guestOn?.host === from ? guestOn.q : undefined;
      if (!src) throw new Error(`no guest on ${from}`);
      const uri = `tcp:${net.hosts[to].addr}:${4000 + (n % 1000)}`;
      const dst = await start(to, g, uri);
      try {
        const out = await driveMigration(
          src.qmp,
          {
            uri,
            downtimeLimitMs: limits.downtimeLimitMs,
            maxBandwidthBytesPerSec: limits.maxBandwidthBytesPerSec,
            capabilities: { 'auto-converge': limits.autoConverge },
            destination: dst.qmp,
          },
          { timeoutMs: 120_000 },
        );
        guestOn = { host: to, q: dst };
        await end(src);
        return {
          figures: out.figures,
          wallMs: out.wallMs,
          srcSerial: src.paths.serialLog,
          dstSerial: dst.paths.serialLog,
        };
      } catch (err) {
        await end(dst);
        throw err;
      }
    },
    async reset() {
      await end(guestOn?.q);
      guestOn = undefined;
    },
  };
}

/** A host-agent per namespace (QEMU driver) on one NATS and Postgres on the bridge; moves by start-migration. */
export function hostAgentSoak(): SoakContender {
  let stack: TestStack | undefined;
  let client: AgentClient | undefined;
  let runRoot: string | undefined;
  let agents: ServiceProcess[] = [];
  let guestOn: { host: string; vmId: string; serial: string } | undefined;
  let n = 0;
  const spec = (g: SoakGuest) => ({
    memoryMiB: g.memoryMiB,
    kernel: g.kernel,
    initrd: g.initrd,
    cmdline: g.cmdline,
  });
  return {
    name: 'host-agent',
    async setup(net, qemu) {
      const ids = Object.keys(net.hosts);
      stack = await startTestStack({
        hostIds: ids,
        listen: { host: net.bridgeAddr, clientCidrs: [net.cidr] },
      });
      runRoot = await mkdtemp(join(tmpdir(), 'ccm-soak-agents-'));
      agents = await Promise.all(
        Object.values(net.hosts).map((h) =>
          startServiceProcess(
            'host-agent',
            stack!.env({
              CCM_HOST_ID: h.id,
              CCM_INSTANCE_ID: `${h.id}-soak`,
              CCM_HYPERVISOR: 'qemu',
              CCM_QEMU_ACCEL: 'tcg',
              CCM_QEMU_BIN: qemu,
              CCM_SEV: 'off',
              CCM_RUN_DIR: join(runRoot!, h.id),
              CCM_MIGRATION_HOST: h.addr,
              CCM_MIGRATION_POLL_MS: '50',
              CCM_OUTBOX_POLL_MS: '20',
              CCM_LOG_LEVEL: 'log',
            }),
            { netns: h.ns, readyTimeoutMs: 60_000, logFile: join(runRoot!, `${h.id}.agent.log`) },
          ),
        ),
      );
      client = await agentClient(stack);
    },
    async teardown() {
      await Promise.allSettled(agents.map((a) => a.stop('SIGTERM')));
      if (runRoot) await killVmProcesses(runRoot);
      await client?.close().catch(() => undefined);
      await stack?.stop();
      if (runRoot) await rm(runRoot, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined);
      agents = [];
    },
    async boot(host, g) {
      await this.reset();
      const vmId = `soak-${++n}`;
      const r = await client!.send(host, 'launch', { vmId, spec: spec(g) });
      guestOn = { host, vmId, serial: join(r.vm.runDir, 'serial.log') };
      return guestOn.serial;
    },
    async move(from, to, g, limits) {
      if (guestOn?.host !== from) throw new Error(`no guest on ${from}`);
      const { vmId, serial } = guestOn;
      const migrationId = `${vmId}-m${++n}`;
      const incoming = await client!.send(to, 'prepare-incoming', { vmId, spec: spec(g), migrationId });
      const dstSerial = join(incoming.vm.runDir, 'serial.log');
      const out = await client!.migrate(from, { migrationId, vmId, uri: incoming.uri, ...limits }, 120_000);
      guestOn = { host: to, vmId, serial: dstSerial };
      const f = out.figures;
      return {
        figures: { ...f, remainingBytes: 0 },
        wallMs: out.wallMs,
        srcSerial: serial,
        dstSerial,
      };
    },
    async reset() {
      if (!guestOn || !client) return;
      const { vmId } = guestOn;
      guestOn = undefined;
      await Promise.allSettled(
        agents.map((a) => client!.send(a.env['CCM_HOST_ID'], 'destroy', { vmId, reason: 'soak reset' })),
      );
    },
  };
}
