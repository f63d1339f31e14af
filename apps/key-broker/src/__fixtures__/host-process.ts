import { startServiceProcess, type ServiceProcess } from '@ccm/testing';

/** A host-agent process: stopped with SIGTERM (its drain), killed if it does not exit in time. */
export type HostProcess = ServiceProcess;

/** Starts the built host-agent with `env` and waits for its `ready` line. */
export function startHostAgent(env: Record<string, string>): Promise<HostProcess> {
  return startServiceProcess('host-agent', env);
}
