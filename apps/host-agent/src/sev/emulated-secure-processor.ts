import { rmSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type SevChainBase64 } from '@ccm/contracts';
import {
  isSevFirmwareError,
  isSevGuestContextError,
  LabAuthority,
  readGuestContextFile,
  SoftwareSecureProcessor,
  sendTargetFromQemu,
  type SevGuest,
  writeGuestContextFile,
} from '@ccm/sev-emulator';
import { type SevPlatformVersion } from '@ccm/sev';
import {
  type AgentSevLaunch,
  type AgentSevRestore,
  type SecureProcessor,
  type SevContextLoss,
} from './secure-processor.js';

const PAGE = 4096;
const alignUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** The platform's chain in QEMU's `migrate-set-parameters` form (PDH, PEK ‖ OCA ‖ CEK, ASK ‖ ARK). */
export function chainOf(sp: SoftwareSecureProcessor): SevChainBase64 {
  const exp = sp.pdhCertExport();
  return {
    pdh: exp.pdh.toString('base64'),
    platCert: exp.certChain.toString('base64'),
    amdCert: sp.amdCertChain().toString('base64'),
  };
}

/**
 * Opens (creating on first use) the lab that endorses this host's emulated chip, and the platform. The
 * hosts of one machine may start together and share the lab: creation runs under a lock directory.
 */
export async function openEmulator(stateDir: string, labDir: string): Promise<SoftwareSecureProcessor> {
  const lab = await withDirLock(`${labDir}.lock`, () => LabAuthority.openOrCreate(labDir));
  const sp = SoftwareSecureProcessor.openOrCreate(stateDir, { lab });
  sp.init();
  return sp;
}

const LOCK_WAIT_MS = 60_000;

/** Runs `fn` holding `dir` (made with mkdir, which is atomic); a lock older than the wait is stale. */
async function withDirLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(dirname(dir), { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await mkdir(dir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = Date.now() - ((await stat(dir).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (age > LOCK_WAIT_MS || Date.now() > deadline) await rm(dir, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The software secure processor as this host's SEV, for the agent's own use: the platform identity,
 * and launches of QEMU guests on a host without SEV firmware. Such a guest's emulator context holds a
 * model of the guest's memory with what the launch measured (the firmware image, then the SEV hashes
 * table of kernel, initrd and command line) and a page for the secret LAUNCH_SECRET delivers (the last
 * page). The context is kept sealed in the VM's runtime dir after every state change, as the AMD-SP
 * would keep holding it, so a restarted agent takes it back ({@link restore}).
 */
export class EmulatedSecureProcessor implements SecureProcessor {
  readonly mode = 'emulated' as const;
  readonly version: SevPlatformVersion;
  readonly features = { sevEs: true, sevSnp: true, cbitpos: 51, reducedPhysBits: 1 };

  constructor(readonly sp: SoftwareSecureProcessor) {
    const { apiMajor, apiMinor, build } = sp.config;
    this.version = { apiMajor, apiMinor, build };
    const caps = sp.qemuSevCapabilities();
    this.features = { ...this.features, cbitpos: caps.cbitpos, reducedPhysBits: caps['reduced-phys-bits'] };
  }

  chain(): SevChainBase64 {
    return chainOf(this.sp);
  }

  launch(input: Parameters<SecureProcessor['launch']>[0]): AgentSevLaunch {
    // Layout: each measured region page-aligned from gpa 0, then the secret page.
    const offsets: number[] = [];
    let end = 0;
    for (const r of input.regions) {
      offsets.push(end);
      end = alignUp(end + r.length, PAGE);
    }
    const secretGpa = end;
    const guest = this.sp.launchStart({
      policy: input.policy,
      godh: input.godh,
      session: input.session,
      memoryBytes: secretGpa + PAGE,
    });
    try {
      this.sp.activate(guest);
      input.regions.forEach((r, i) => {
        const padded = Buffer.alloc(alignUp(r.length, 16));
        padded.set(r);
        guest.host.write(offsets[i], padded);
        this.sp.launchUpdateData(guest, offsets[i], padded.length);
      });
    } catch (err) {
      this.release(guest);
      throw err;
    }
    return new EmulatedLaunch(this.sp, guest, input.contextFile, () => this.release(guest));
  }

  restore(input: { vmId: string; contextFile: string }): AgentSevRestore {
    try {
      const sealed = readGuestContextFile(input.contextFile);
      if (!sealed) {
        const detail = `no sealed context at ${input.contextFile} (the launch was never measured, or the file was removed)`;
        return { lost: { reason: 'context-missing', detail } };
      }
      const guest = this.sp.importGuest(sealed);
      return { launch: new EmulatedLaunch(this.sp, guest, input.contextFile, () => this.release(guest)) };
    } catch (err) {
      // Never a crash of the adoption: whatever the file holds, the VM runs on without its context.
      const loss: SevContextLoss = isSevFirmwareError(err)
        ? {
            reason: 'context-refused',
            fault: isSevGuestContextError(err) ? err.fault : err.reason,
            status: err.code,
            detail: err.message,
          }
        : { reason: 'context-refused', detail: (err as Error)?.message ?? String(err) };
      return { lost: loss };
    }
  }

  private release(guest: SevGuest): void {
    try {
      this.sp.deactivate(guest);
    } catch {
      // not active
    }
    try {
      this.sp.decommission(guest);
    } catch {
      // already gone
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * One QEMU guest's launch (and later SEND_START) on the software secure processor. Each step that
 * changes the context's state rewrites its sealed copy before it returns.
 */
class EmulatedLaunch implements AgentSevLaunch {
  /** The secret page: the last page of the modelled memory (see {@link EmulatedSecureProcessor.launch}). */
  readonly secretGpa: number;

  constructor(
    private readonly sp: SoftwareSecureProcessor,
    readonly guest: SevGuest,
    private readonly contextFile: string,
    private readonly release: () => void,
  ) {
    this.secretGpa = guest.host.size - PAGE;
  }

  get state(): string {
    return this.guest.state;
  }

  /** Keeps the context sealed beside the VM (atomic, 0600). */
  private persist(): void {
    writeGuestContextFile(this.contextFile, this.sp.exportGuest(this.guest));
  }

  measure(): Buffer {
    const { blob } = this.sp.launchMeasure(this.guest);
    this.persist();
    return blob;
  }

  injectSecret(header: Buffer, ciphertext: Buffer, gpa?: number): void {
    this.sp.launchSecret(this.guest, { header, data: ciphertext, gpa: gpa ?? this.secretGpa });
    this.persist();
  }

  finish(): void {
    if (this.guest.state !== 'LSECRET') return;
    this.sp.launchFinish(this.guest);
    this.persist();
  }

  sendStart(target: SevChainBase64): void {
    this.finish();
    this.sp.sendStart(
      this.guest,
      sendTargetFromQemu({
        'sev-pdh': target.pdh,
        'sev-plat-cert': target.platCert,
        'sev-amd-cert': target.amdCert,
      }),
    );
    this.persist();
  }

  sendEnd(completed: boolean): void {
    if (this.guest.state !== 'SUPDATE') return;
    if (completed) this.sp.sendFinish(this.guest);
    else this.sp.sendCancel(this.guest);
    this.persist();
  }

  secretArea(length: number): Buffer {
    return this.guest.inGuest().memory.read(this.secretGpa, length);
  }

  close(): void {
    this.release();
    rmSync(this.contextFile, { force: true });
  }
}
