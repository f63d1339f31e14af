import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICES, type ServiceName } from '@ccm/contracts';
import { killVmProcesses } from '@ccm/qmp';
import { FAST_ENV, startServiceProcess, type ServiceProcess, type TestStack } from '@ccm/testing';

/** The host a probed host-agent serves and the VM a probed guest-agent runs in. */
export const PROBE_HOST = 'probe-host';
export const PROBE_VM = 'probe-vm';

export interface EveryService {
  /** Each service's process (its HTTP port among what it reported when ready). */
  apps: Map<ServiceName, ServiceProcess>;
  /** `GET /health` of every service: the statuses by service. */
  health(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/**
 * Every CCM service (each of SERVICES, so a service added there is started without a change here) as
 * its own built process against `stack`, each listening for HTTP on a free port; the host-agent on the
 * simulated hypervisor without SEV, its run dir in a temp dir.
 */
export async function startEveryService(
  stack: TestStack,
  env: Record<string, string> = {},
): Promise<EveryService> {
  const runRoot = await mkdtemp(join(tmpdir(), 'ccm-every-'));
  const apps = new Map<ServiceName, ServiceProcess>();
  const close = async () => {
    for (const p of [...apps.values()].reverse()) await p.stop().catch(() => undefined);
    await killVmProcesses(runRoot);
    await rm(runRoot, { recursive: true, force: true });
  };
  try {
    for (const service of SERVICES) {
      const p = await startServiceProcess(
        service,
        stack.env({
          ...FAST_ENV,
          CCM_INSTANCE_ID: `${service}-probe`,
          CCM_LOG_LEVEL: process.env['CCM_PROBE_LOG_LEVEL'] ?? 'error',
          CCM_HOST_ID: PROBE_HOST,
          CCM_VM_ID: PROBE_VM,
          CCM_HYPERVISOR: 'sim',
          CCM_SEV: 'off',
          CCM_RUN_DIR: join(runRoot, PROBE_HOST),
          ...env,
        }),
      );
      apps.set(service, p);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    apps,
    health: async () => {
      const out: Record<string, number> = {};
      for (const [service, { httpPort }] of apps) {
        out[service] = (await fetch(`http://127.0.0.1:${httpPort}/health`)).status;
      }
      return out;
    },
    close,
  };
}
