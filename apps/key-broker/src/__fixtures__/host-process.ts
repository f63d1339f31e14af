import { startServiceProcess, type ServiceProcess } from '@ccm/testing';

/** A host-agent (or guest-agent) process: stopped with SIGTERM (its drain), killed if it does not exit in time. */
export type HostProcess = ServiceProcess;

/** Starts the built host-agent with `env` and waits for its `ready` line. */
export function startHostAgent(env: Record<string, string>): Promise<HostProcess> {
  return startServiceProcess('host-agent', env);
}

/** Starts a built agent with `env` and waits for its `ready` line. */
export function startAgent(
  app: 'host-agent' | 'guest-agent',
  env: Record<string, string>,
): Promise<HostProcess> {
  return startServiceProcess(app, env);
}
