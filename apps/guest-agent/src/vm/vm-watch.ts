import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type GuestAgentConfig } from '../config.js';

const WATCH_MS = 500;

/**
 * A guest-agent is the inside of its VM: it must not outlive it. When CCM_GUEST_VM_PID names the VM's
 * process (a simulated VM starts its guest-agent so), the agent drains and exits once that process
 * is gone, however it ended (a destroy, a crash, SIGKILL).
 */
@Injectable()
export class VmWatch implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly log = new Logger('VmWatch');
  private timer?: NodeJS.Timeout;

  constructor(@Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig) {}

  onApplicationBootstrap(): void {
    const pid = this.config.CCM_GUEST_VM_PID;
    if (pid === undefined) return;
    this.timer = setInterval(() => {
      if (alive(pid)) return;
      clearInterval(this.timer);
      this.log.warn(`the VM process ${pid} is gone: the guest-agent stops`);
      process.kill(process.pid, 'SIGTERM');
    }, WATCH_MS);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
