import { buildSevKernelHashesTable } from '@ccm/sev';
import { SoftwareSecureProcessor, sendTargetFromQemu, type SevGuest } from '@ccm/sev-emulator';
import { DirtyLog, PAGE_SIZE, SIM_LAYOUT, type PagePayload, type SimMemory } from './memory.js';
import { type SimSev } from './sim-sev.js';
import { readBootImage, type SimVmSpec } from './sim-vm.js';

const MIB = 1024 * 1024;
const pad16 = (b: Uint8Array): Buffer => {
  const out = Buffer.alloc(Math.ceil(b.length / 16) * 16);
  out.set(b);
  return out;
};

/**
 * An SEV guest's memory is the secure processor's: the guest reads and writes plaintext through its
 * in-guest view (private pages, encrypted with the guest's key), the host sees ciphertext, and a page
 * leaves only as a SEND_UPDATE_DATA packet and arrives only through RECEIVE_UPDATE_DATA, whose MAC
 * check refuses a packet changed in transit (BAD_MEASUREMENT).
 */
class SevMemory implements SimMemory {
  readonly pages: number;
  readonly dirty: DirtyLog;
  guest?: SevGuest;

  constructor(
    private readonly sp: SoftwareSecureProcessor,
    readonly bytes: number,
  ) {
    this.pages = Math.ceil(bytes / PAGE_SIZE);
    this.dirty = new DirtyLog(this.pages);
  }

  private get g(): SevGuest {
    if (!this.guest)
      throw new Error('the SEV guest has no context yet (before LAUNCH_START or RECEIVE_START)');
    return this.guest;
  }

  read(gpa: number, length: number): Buffer {
    return this.g.inGuest().memory.read(gpa, length);
  }

  write(gpa: number, bytes: Uint8Array): void {
    this.g.inGuest().memory.write(gpa, bytes);
    this.dirty.markRange(gpa, bytes.length);
  }

  exportPage(gfn: number): PagePayload {
    const p = this.sp.sendUpdateData(this.g, gfn * PAGE_SIZE, PAGE_SIZE);
    return { kind: 'sealed', header: p.header, data: p.data };
  }

  importPage(gfn: number, page: PagePayload): void {
    if (page.kind !== 'sealed') throw new Error(`page ${gfn} arrived unsealed for an SEV guest`);
    this.sp.receiveUpdateData(this.g, { header: page.header, data: page.data, gpa: gfn * PAGE_SIZE });
  }
}

/** The SEV side of a simulated VM on the host's software secure processor. */
class EmulatedSimSev implements SimSev {
  readonly memory: SevMemory;
  private blob?: Buffer;

  constructor(
    private readonly sp: SoftwareSecureProcessor,
    private readonly s: SimVmSpec,
  ) {
    this.memory = new SevMemory(sp, s.spec.memoryMiB * MIB);
    const sev = s.sev!;
    if (sev.godh && sev.session) this.launch(sev.policy, sev.godh, sev.session);
  }

  /**
   * LAUNCH_START, then the boot image through the host view and LAUNCH_UPDATE_DATA of what a measured
   * direct boot measures: the firmware, then the SEV hashes table of kernel, initrd and command line.
   */
  private launch(policy: number, godh: string, session: string): void {
    const guest = this.sp.launchStart({
      policy,
      godh: Buffer.from(godh, 'base64'),
      session: Buffer.from(session, 'base64'),
      memoryBytes: this.memory.bytes,
    });
    this.memory.guest = guest;
    const image = readBootImage(this.s);
    if (!image.firmware) throw new Error('an SEV launch needs the firmware image (CCM_VM_FIRMWARE)');
    const firmware = pad16(image.firmware);
    const hashes = buildSevKernelHashesTable({
      kernel: image.kernel ?? Buffer.alloc(0),
      initrd: image.initrd,
      cmdline: image.cmdline,
    });
    guest.host.write(SIM_LAYOUT.firmwareGpa, firmware);
    guest.host.write(SIM_LAYOUT.hashesGpa, hashes);
    if (image.kernel) guest.host.write(SIM_LAYOUT.kernelGpa, image.kernel);
    this.sp.activate(guest);
    this.sp.launchUpdateData(guest, SIM_LAYOUT.firmwareGpa, firmware.length);
    this.sp.launchUpdateData(guest, SIM_LAYOUT.hashesGpa, hashes.length);
    this.blob = this.sp.launchMeasure(guest).blob;
  }

  private get guest(): SevGuest {
    if (!this.memory.guest) throw new Error('no SEV guest context');
    return this.memory.guest;
  }

  info(): Record<string, unknown> {
    const { apiMajor, apiMinor, build } = this.sp.config;
    const g = this.memory.guest;
    return {
      enabled: true,
      'api-major': apiMajor,
      'api-minor': apiMinor,
      'build-id': build,
      policy: g?.policy ?? this.s.sev!.policy,
      state: (g?.state ?? 'uninit').toLowerCase(),
      handle: g?.handle ?? 0,
      'sev-type': g?.kind === 'sev-es' ? 'sev-es' : 'sev',
    };
  }

  measurement(): string {
    if (!this.blob) throw new Error('this guest was not launched here (no LAUNCH_MEASURE)');
    return this.blob.toString('base64');
  }

  injectSecret(headerBase64: string, secretBase64: string, gpa?: number): void {
    this.sp.launchSecret(this.guest, {
      header: Buffer.from(headerBase64, 'base64'),
      data: Buffer.from(secretBase64, 'base64'),
      gpa: gpa ?? SIM_LAYOUT.secretGpa,
    });
  }

  /** Whether the guest may execute: not once SEND_FINISH made its context SENT. */
  canRun(): boolean {
    return this.memory.guest?.state !== 'SENT';
  }

  finishLaunch(): void {
    if (this.guest.state === 'LSECRET') this.sp.launchFinish(this.guest);
  }

  sendStart(target: { pdh: string; platCert: string; amdCert: string }): Record<string, unknown> {
    const started = this.sp.sendStart(
      this.guest,
      sendTargetFromQemu({
        'sev-pdh': target.pdh,
        'sev-plat-cert': target.platCert,
        'sev-amd-cert': target.amdCert,
      }),
    );
    return {
      policy: started.policy,
      session: started.session.toString('base64'),
      sourcePdh: this.sp.pdhCertExport().pdh.toString('base64'),
    };
  }

  sendEnd(completed: boolean): void {
    if (this.memory.guest?.state !== 'SUPDATE') return;
    if (completed) this.sp.sendFinish(this.guest);
    else this.sp.sendCancel(this.guest);
  }

  receiveStart(hello: Record<string, unknown>): void {
    const str = (k: string): string => {
      const v = hello[k];
      if (typeof v !== 'string') throw new Error(`HELLO carries no SEV ${k}`);
      return v;
    };
    const policy = Number(hello['policy']);
    if (policy !== this.s.sev!.policy) {
      throw new Error(
        `the stream's guest policy 0x${policy.toString(16)} is not this destination's 0x${this.s.sev!.policy.toString(16)}`,
      );
    }
    const guest = this.sp.receiveStart({
      policy,
      sourcePdh: Buffer.from(str('sourcePdh'), 'base64'),
      session: Buffer.from(str('session'), 'base64'),
      memoryBytes: this.memory.bytes,
    });
    this.sp.activate(guest);
    this.memory.guest = guest;
  }

  receiveFinish(): void {
    this.sp.receiveFinish(this.guest);
  }

  hostView(gpa: number, length: number): Buffer {
    return this.guest.host.read(gpa, length);
  }
}

/** The SEV side of a simulated VM, on the host's software secure processor in `stateDir`. */
export function openSimSev(spec: SimVmSpec, stateDir: string | undefined): SimSev {
  if (!stateDir) throw new Error('SEV guests need the software secure processor (no CCM_SEV_EMULATOR_DIR)');
  const sp = SoftwareSecureProcessor.open(stateDir);
  sp.init();
  return new EmulatedSimSev(sp, spec);
}
