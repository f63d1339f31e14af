import { type Logger } from '@nestjs/common';
import { type VmPhase } from '@ccm/contracts';
import { type HostAgentConfig } from '../config.js';
import { adoptVmProcess, readPid, vmPaths } from '../drivers/vm-process.js';
import { type HostStore } from '../store/host-store.js';
import { LiveVm } from './live-vm.js';
import { type SevLaunches } from './sev-launch.js';
import { type VmProcesses } from './vm-processes.js';

/** The phase a re-adopted VM is in, from QEMU's run state; undefined: the migration's watcher decides. */
export function adoptedPhase(status: string): VmPhase | undefined {
  if (status === 'running') return 'Running';
  if (status === 'inmigrate') return 'Incoming';
  if (status === 'paused' || status === 'prelaunch') return 'Paused';
  return undefined; // postmigrate and the like
}

/**
 * After a restart: re-attaches to every VM process the previous agent left running (checked by pid
 * and command line, reconnected over its QMP socket, phase read from query-status), and records the
 * VMs whose process ended while no agent watched.
 */
export async function adoptVms(d: {
  config: HostAgentConfig;
  store: HostStore;
  processes: VmProcesses;
  sevLaunches: SevLaunches;
  log: Logger;
}): Promise<{ adopted: string[]; died: string[] }> {
  const adopted: string[] = [];
  const died: string[] = [];
  for (const r of await d.store.loadLiveVms()) {
    const vm = new LiveVm(r, r, (next, prev) => d.store.saveVm(next, prev));
    const paths = vmPaths(r.runDir);
    const pid = r.pid ?? (await readPid(paths));
    const proc = pid
      ? await adoptVmProcess(paths, pid, {
          connectTimeoutMs: 2_000,
          commandTimeoutMs: d.config.CCM_QMP_COMMAND_TIMEOUT_MS,
        })
      : undefined;
    const status = proc && (await proc.qmp.execute('query-status').catch(() => undefined));
    if (!proc || !status) {
      await proc?.qmp.close();
      const phase = r.phase === 'Incoming' || r.phase === 'Starting' ? 'Failed' : 'Died';
      const reason = `the VM process${pid ? ` (pid ${pid})` : ''} ended while the host-agent was down`;
      await vm.set({ phase, reason, pid: undefined });
      await d.processes.cleanRunDir(r.runDir);
      await d.processes.releaseDevices(r);
      d.log.warn(`VM ${r.vmId} ${phase}: ${reason}`);
      died.push(r.vmId);
      continue;
    }
    d.sevLaunches.restore(vm, d.log);
    await d.processes.attach(vm, proc);
    const phase = adoptedPhase(status.status);
    if (phase && phase !== r.phase) await vm.set({ phase });
    d.log.log(`VM ${r.vmId} re-adopted: pid ${proc.pid}, ${status.status}`);
    adopted.push(r.vmId);
  }
  return { adopted, died };
}
