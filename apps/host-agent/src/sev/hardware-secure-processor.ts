import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SevChainBase64 } from '@ccm/contracts';
import { QemuStartError, QmpClient, type SevCapability } from '@ccm/qmp';
import { decodeAmdCaChain, decodeQemuSevCapabilities, type SevPlatformVersion } from '@ccm/sev';
import { type AgentSevLaunch, type AgentSevRestore, type SecureProcessor } from './secure-processor.js';

/** How long the probe QEMU may take to answer. */
export const SEV_PROBE_TIMEOUT_MS = 15_000;

/**
 * Asks the host's SEV firmware for its platform certificates the way QEMU exposes them: a throw-away
 * QEMU with no machine (`-machine none -accel kvm`) answers `query-sev-capabilities` (PDH, PEK ‖ OCA ‖
 * CEK, C-bit position), then quits.
 */
export async function probeSevCapabilities(
  binary: string,
  timeoutMs = SEV_PROBE_TIMEOUT_MS,
): Promise<SevCapability> {
  const dir = await mkdtemp(join(tmpdir(), 'ccm-sev-probe-'));
  const socket = join(dir, 'qmp.sock');
  const argv = ['-machine', 'none', '-accel', 'kvm', '-nodefaults', '-display', 'none', '-S'];
  argv.push('-qmp', `unix:${socket},server=on,wait=off`, '-pidfile', join(dir, 'probe.pid'));
  const child = spawn(binary, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  const abort = new AbortController();
  child.once('exit', (code, signal) =>
    abort.abort(
      new QemuStartError('the SEV probe exited before answering', code, signal, stderr, [binary, ...argv]),
    ),
  );
  child.once('error', (err) =>
    abort.abort(
      new QemuStartError(`cannot run ${binary}: ${err.message}`, null, null, '', [binary, ...argv]),
    ),
  );
  try {
    const qmp = await QmpClient.connect(socket, { connectTimeoutMs: timeoutMs, signal: abort.signal });
    try {
      return await qmp.execute('query-sev-capabilities', undefined, { timeoutMs });
    } finally {
      await qmp.execute('quit').catch(() => undefined);
      await qmp.close();
    }
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The host's SEV firmware, reached through QEMU. The platform chain is what query-sev-capabilities
 * reports plus the ASK ‖ ARK of the product line (AMD publishes them; CCM_SEV_AMD_CERT_FILE); the
 * firmware version comes from the PEK certificate (a launched guest's `query-sev` also gives the
 * build). Launches, secrets and transport run in the firmware, over QMP: the agent never drives them.
 */
export class HardwareSecureProcessor implements SecureProcessor {
  readonly mode = 'hardware' as const;
  readonly version: SevPlatformVersion;
  readonly features: SecureProcessor['features'];

  private constructor(
    private readonly caps: SevCapability,
    private readonly amdCerts: Buffer,
  ) {
    const decoded = decodeQemuSevCapabilities(caps);
    this.version = { apiMajor: decoded.pek.apiMajor, apiMinor: decoded.pek.apiMinor, build: 0 };
    this.features = {
      sevEs: true,
      sevSnp: false,
      cbitpos: caps.cbitpos,
      reducedPhysBits: caps['reduced-phys-bits'],
    };
  }

  static async open(o: {
    binary: string;
    amdCertFile: string;
    timeoutMs?: number;
  }): Promise<HardwareSecureProcessor> {
    const amd = await readFile(o.amdCertFile);
    decodeAmdCaChain(amd); // fails early on a file that is not ASK ‖ ARK
    return new HardwareSecureProcessor(await probeSevCapabilities(o.binary, o.timeoutMs), amd);
  }

  chain(): SevChainBase64 {
    return {
      pdh: this.caps.pdh,
      platCert: this.caps['cert-chain'],
      amdCert: this.amdCerts.toString('base64'),
    };
  }

  launch(): AgentSevLaunch {
    throw new Error('with SEV firmware the launch runs in the firmware, through QEMU');
  }

  restore(): AgentSevRestore {
    throw new Error('with SEV firmware the guest context stays in the firmware');
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
