import { type ServiceName } from '@ccm/contracts';
import { startServiceProcess, type ServiceProcess } from '@ccm/testing';
import { CRASH_LOOP_WINDOW_MS, RestartPolicy } from './restart-policy.js';
import { forgetPid, recordPid } from './pids.js';

/** How to (re)start one service of the stack. */
export interface ServiceSpec {
  /** Unique in the stack: the app, or `host-agent-<host>`. */
  name: string;
  app: ServiceName;
  env: Record<string, string>;
  logFile: string;
  /** Run it inside this network namespace (a lab host's). */
  netns?: string;
}

/**
 * Runs the stack's services and keeps them running: a service that dies is reported at once (its name
 * and exit code or signal) and restarted after a backoff; one that dies {@link RestartPolicy} times
 * within a minute is reported as crash-looping and left down while the others keep running. Every
 * process it starts is recorded in the state dir, so a watchdog or the next start can stop it.
 */
export class Supervisor {
  /** The current process of each service, in the order they were added (restarts replace in place). */
  readonly services: ServiceProcess[] = [];
  /** Services given up after a crash loop. */
  readonly givenUp = new Set<string>();
  private stopping = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly starting = new Set<Promise<unknown>>();

  constructor(
    private readonly stateDir: string,
    private readonly log: (m: string) => void,
  ) {}

  /** Starts a service and waits until it is ready; a failure to start the first time is thrown. */
  async add(spec: ServiceSpec): Promise<ServiceProcess> {
    const slot = this.services.length;
    this.services.length = slot + 1;
    const p = await this.launch(spec);
    this.services[slot] = p;
    this.watch(spec, slot, p, new RestartPolicy());
    return p;
  }

  /** Stops restarting, waits for restarts under way, then SIGTERMs every current process (last first). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.starting]);
    const current = this.services.filter((s): s is ServiceProcess => s !== undefined);
    await Promise.allSettled(current.reverse().map((s) => s.stop('SIGTERM')));
  }

  private async launch(spec: ServiceSpec): Promise<ServiceProcess> {
    const p = await startServiceProcess(spec.app, spec.env, {
      logFile: spec.logFile,
      ...(spec.netns ? { netns: spec.netns } : {}),
      // A crashed launcher leaves its services to its watchdog and to the next start.
      orphans: 'exit',
    });
    await recordPid(this.stateDir, {
      name: spec.name,
      pid: p.child.pid ?? -1,
      stopSignal: 'SIGTERM',
      server: false,
    });
    return p;
  }

  private watch(spec: ServiceSpec, slot: number, p: ServiceProcess, policy: RestartPolicy): void {
    void p.exited.then(({ code, signal }) =>
      this.onDeath(spec, slot, policy, signal ? `signal ${signal}` : `exit code ${code}`),
    );
  }

  private async onDeath(spec: ServiceSpec, slot: number, policy: RestartPolicy, how: string) {
    if (this.stopping) return;
    await forgetPid(this.stateDir, spec.name);
    const d = policy.onDeath(Date.now());
    const window = `${d.deathsInWindow} death(s) within ${CRASH_LOOP_WINDOW_MS / 1000} s`;
    if (!d.restart) {
      this.givenUp.add(spec.name);
      this.log(
        `${spec.name} died (${how}): ${window}, a crash loop; gave up on it, the other services keep running (see ${spec.logFile})`,
      );
      return;
    }
    this.log(`${spec.name} died (${how}); restarting in ${d.delayMs} ms (${window})`);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const attempt = this.launch(spec).then(
        (np) => {
          if (this.stopping) return void np.stop('SIGTERM');
          this.services[slot] = np;
          this.log(`${spec.name} restarted: pid ${np.child.pid}, ${np.httpUrl}/health`);
          this.watch(spec, slot, np, policy);
        },
        (err: unknown) =>
          this.onDeath(spec, slot, policy, `failed to restart: ${(err as Error).message.slice(0, 300)}`),
      );
      this.starting.add(attempt);
      void attempt.finally(() => this.starting.delete(attempt));
    }, d.delayMs);
    this.timers.add(timer);
  }
}
