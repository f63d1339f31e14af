import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type INestApplication } from '@nestjs/common';
import { SERVICES, type ServiceName } from '@ccm/contracts';
import { HandlerRegistry, type HandlerWiring } from '@ccm/messaging';
import { createServiceApp, type ServiceDefinition } from '@ccm/runtime';
import { type TestStack, FAST_ENV } from '@ccm/testing';
import { killVmProcesses } from '@ccm/qmp';

/** The host a probed host-agent serves and the VM a probed guest-agent runs in. */
export const PROBE_HOST = 'probe-host';
export const PROBE_VM = 'probe-vm';

/** One handler of one running service. */
export interface ServiceHandler extends HandlerWiring {
  service: ServiceName;
}

export interface EveryService {
  apps: Map<ServiceName, { app: INestApplication; httpPort: number }>;
  /** Every `@OnRequest` and `@OnJetStream` handler the services wired at boot. */
  handlers(): ServiceHandler[];
  /** `GET /health` of every service: the statuses by service. */
  health(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/**
 * The service definition `apps/<name>/src/app.ts` exports: found by its `service` field, so a service
 * added to SERVICES is started (and its handlers probed) without a change here.
 */
async function definitionOf(name: ServiceName): Promise<ServiceDefinition> {
  const mod = (await import(resolve(import.meta.dirname, `../../../apps/${name}/src/app.ts`))) as Record<
    string,
    unknown
  >;
  const def = Object.values(mod).find(
    (v): v is ServiceDefinition =>
      !!v && typeof v === 'object' && (v as { service?: unknown }).service === name,
  );
  if (!def) throw new Error(`apps/${name}/src/app.ts exports no ServiceDefinition for ${name}`);
  return def;
}

/**
 * Every CCM service in this process against `stack`, each listening for HTTP on a free port; the
 * host-agent on the simulated hypervisor without SEV, its run dir in a temp dir.
 */
export async function startEveryService(
  stack: TestStack,
  env: Record<string, string> = {},
): Promise<EveryService> {
  const runRoot = await mkdtemp(join(tmpdir(), 'ccm-every-'));
  const apps = new Map<ServiceName, { app: INestApplication; httpPort: number }>();
  const close = async () => {
    for (const { app } of [...apps.values()].reverse()) await app.close().catch(() => undefined);
    await killVmProcesses(runRoot);
    await rm(runRoot, { recursive: true, force: true });
  };
  try {
    for (const service of SERVICES) {
      const { app } = await createServiceApp(
        await definitionOf(service),
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
      await app.listen(0, '127.0.0.1');
      const address = app.getHttpServer().address() as { port: number };
      apps.set(service, { app, httpPort: address.port });
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    apps,
    handlers: () =>
      [...apps].flatMap(([service, { app }]) =>
        app.get(HandlerRegistry, { strict: false }).wiring.map((w) => ({ ...w, service })),
      ),
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
