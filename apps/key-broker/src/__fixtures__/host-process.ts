import { startBuiltService, type ServiceProcess } from '@ccm/testing';

/** A host-agent (or guest-agent) process run from dist/. */
export type HostProcess = ServiceProcess;

/** Starts the built host-agent with `env` and waits for its `ready` line. */
export const startHostAgent = (env: Record<string, string>): Promise<HostProcess> =>
  startBuiltService('host-agent', env);

/** Starts a built agent with `env` and waits for its `ready` line. */
export const startAgent = (
  app: 'host-agent' | 'guest-agent',
  env: Record<string, string>,
): Promise<HostProcess> => startBuiltService(app, env);
