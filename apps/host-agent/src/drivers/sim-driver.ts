import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CcmError, ErrorCodes } from '@ccm/contracts';
import { QemuStartError, QmpClient } from '@ccm/qmp';
import { type HypervisorDriver, type StartVmOptions } from './driver.js';
import { fromChild, type VmExit, type VmProcess } from './vm-process.js';

export interface SimDriverOptions {
  /** The simulated VM's entry script; default the built sim/sim-vm.main.js. */
  entry?: string;
  /** The software secure processor's state dir (SEV guests), passed to each VM process. */
  sevStateDir?: string;
  /** Start a guest-agent inside each launched VM (see CCM_SIM_GUEST_AGENT). */
  guestAgent?: { labDir: string; image: string; entry?: string };
}

/**
 * The built entry of a simulated VM. From dist/ it sits beside this file's compiled sibling; when the
 * agent runs from TypeScript sources (in-process tests) the compiled one under dist/ is used.
 */
export function defaultSimEntry(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, '..', 'sim', 'sim-vm.main.js');
  if (existsSync(sibling)) return sibling;
  const repo = resolve(here, '..', '..', '..', '..');
  return join(repo, 'dist', 'apps', 'host-agent', 'src', 'sim', 'sim-vm.main.js');
}

/** The built guest-agent a sim VM starts as its inside (dist/apps/guest-agent/src/main.js). */
export function defaultGuestAgentEntry(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = resolve(here, '..', '..', '..', 'guest-agent', 'src', 'main.js');
  if (existsSync(sibling)) return sibling;
  const repo = resolve(here, '..', '..', '..', '..');
  return join(repo, 'dist', 'apps', 'guest-agent', 'src', 'main.js');
}

/**
 * The simulated hypervisor: one node process per VM (guest memory as pages, a dirtying workload,
 * QEMU's QMP surface, pre-copy over TCP). It is started like QEMU: runtime dir in, QMP socket out.
 * The VM process has its own stdio files so it outlives the agent that started it.
 */
export class SimDriver implements HypervisorDriver {
  readonly kind = 'sim' as const;
  readonly accelerator = { accelerator: 'sim' as const, reason: 'simulated hypervisor (CCM_HYPERVISOR=sim)' };
  /** The VM's own process runs SEV on the software secure processor, reached over QMP like firmware. */
  readonly firmwareSev = true;
  private readonly entry: string;

  constructor(private readonly opts: SimDriverOptions) {
    this.entry = opts.entry ?? defaultSimEntry();
  }

  async start(o: StartVmOptions): Promise<VmProcess> {
    const qemuOnly = [
      ...(['disks', 'nics', 'fwCfg'] as const).filter((k) => o.spec[k]?.length),
      ...(o.spec.cpu && o.spec.cpu !== 'default' ? ['cpu'] : []),
    ];
    if (qemuOnly.length) {
      throw new CcmError(
        ErrorCodes.ValidationFailed,
        `the simulated hypervisor runs no ${qemuOnly.join(', ')}: the qemu driver does`,
        { retryable: false, effect: 'none', details: { fields: qemuOnly } },
      );
    }
    const argv = [process.execPath, this.entry, o.paths.runDir];
    const log = openSync(o.paths.stderrLog, 'a');
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', log, log],
      env: {
        ...process.env,
        ...(this.opts.sevStateDir ? { CCM_SEV_EMULATOR_DIR: this.opts.sevStateDir } : {}),
        ...(this.opts.guestAgent
          ? {
              CCM_SIM_GUEST_LAB_DIR: this.opts.guestAgent.labDir,
              CCM_SIM_GUEST_IMAGE: this.opts.guestAgent.image,
              CCM_SIM_GUEST_AGENT_ENTRY: this.opts.guestAgent.entry ?? defaultGuestAgentEntry(),
            }
          : {}),
      },
    });
    closeSync(log);
    let exit: VmExit | undefined;
    const abort = new AbortController();
    const exited = new Promise<VmExit>((resolveExit) => {
      child.once('error', (err) => {
        exit ??= { code: null, signal: null };
        abort.abort(
          new QemuStartError(`cannot run ${this.entry}: ${err.message}`, null, null, '', argv, {
            cause: err,
          }),
        );
        resolveExit(exit);
      });
      child.once('exit', (code, signal) => {
        exit ??= { code, signal };
        abort.abort(
          new QemuStartError(
            `exited (code ${code ?? 'none'}, signal ${signal ?? 'none'}) before QMP was ready`,
            code,
            signal,
            '',
            argv,
          ),
        );
        resolveExit(exit);
      });
    });
    try {
      const qmp = await QmpClient.connect(o.paths.qmpSocket, {
        connectTimeoutMs: o.startTimeoutMs,
        commandTimeoutMs: o.commandTimeoutMs,
        signal: abort.signal,
      });
      return fromChild(child.pid!, qmp, o.paths, exited, () => exit !== undefined);
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      if (err instanceof QemuStartError) {
        const { readFile } = await import('node:fs/promises');
        const tail = (await readFile(o.paths.stderrLog, 'utf8').catch(() => '')).slice(-4000);
        throw new QemuStartError(err.detail, err.exitCode, err.signal, tail, argv);
      }
      throw new QemuStartError(`QMP handshake failed: ${(err as Error).message}`, null, null, '', argv, {
        cause: err,
      });
    }
  }
}
