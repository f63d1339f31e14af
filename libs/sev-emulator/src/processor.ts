import type { SevCertificateChain, SevRandomSource, TcbVersion } from '@ccm/sev';
import * as admin from './commands/guest-admin.js';
import * as context from './commands/guest-context.js';
import * as launch from './commands/launch.js';
import type { GuestPacketInput } from './commands/packets.js';
import * as platform from './commands/platform.js';
import type { SendStartTarget } from './commands/send-target.js';
import * as snp from './commands/snp.js';
import * as transport from './commands/transport.js';
import { Firmware, type GuestRef } from './firmware.js';
import { SevGuest } from './guest/sev-guest.js';
import type { LabAuthority } from './lab/lab-authority.js';
import { type LabTrustAnchors, mergeTrustAnchors, trustAnchorsOf } from './lab/trust.js';
import * as exportsOf from './platform/chain-export.js';
import {
  createPlatformState,
  defaultPlatformConfig,
  openPlatformState,
  type PlatformConfig,
  type PlatformState,
} from './platform/platform-store.js';
import { StateFiles } from './store/state-files.js';

/** Options of {@link SoftwareSecureProcessor.create}. */
export interface CreateProcessorOptions {
  /** The lab that endorses the new chip's CEK and VCEK (its product line becomes the platform's). */
  readonly lab: LabAuthority;
  /** Firmware API version and build [1.55, build 21]. */
  readonly apiMajor?: number;
  readonly apiMinor?: number;
  readonly build?: number;
  /** The platform TCB [a plausible one for the product line]; must use the line's TCB layout. */
  readonly tcb?: TcbVersion;
  /** Number of ASIDs, which also bounds concurrent guests [16]. */
  readonly maxAsid?: number;
}

/** Options of {@link SoftwareSecureProcessor.open}. */
export interface OpenProcessorOptions {
  /** Roots SEND_START trusts besides AMD's and this platform's own lab (other labs of the test bed). */
  readonly trust?: LabTrustAnchors;
  /** Randomness for nonces, IVs and transport keys [node:crypto]; inject for deterministic tests. */
  readonly random?: SevRandomSource;
}

/**
 * A software AMD secure processor: one emulated SEV/SEV-ES/SEV-SNP platform with a persistent identity
 * (chip secret, lab-endorsed CEK and VCEK, OCA/PEK/PDH) in a state directory, and the firmware's command
 * set with its platform and guest state machines. Every command returns a typed result or throws a
 * `SevFirmwareError` whose `code` is the SEV API status. Volatile state (platform state, guests) starts
 * over on every open, as after a host reboot: call {@link init} first.
 *
 * A hypervisor driver typically: `init()`, then `launchStart` → write the image through
 * `guest.host.write` → `activate` → `launchUpdateData` → `launchMeasure` → `launchSecret` →
 * `launchFinish`; for migration `sendStart`/`sendUpdateData`/`sendFinish` on the source and
 * `receiveStart`/`activate`/`receiveUpdateData`/`receiveFinish` on the target.
 */
export class SoftwareSecureProcessor {
  readonly #fw: Firmware;

  private constructor(state: PlatformState, options: OpenProcessorOptions) {
    const own = trustAnchorsOf({ ...state, generation: state.config.generation });
    const trust = options.trust ? mergeTrustAnchors(own, options.trust) : own;
    this.#fw = new Firmware(state, trust, options.random);
  }

  /** Creates a new platform in `stateDir` (which must not hold one) and opens it. */
  static create(
    stateDir: string,
    options: CreateProcessorOptions & OpenProcessorOptions,
  ): SoftwareSecureProcessor {
    const defaults = defaultPlatformConfig(options.lab.generation);
    const config: PlatformConfig = {
      generation: options.lab.generation,
      apiMajor: options.apiMajor ?? defaults.apiMajor,
      apiMinor: options.apiMinor ?? defaults.apiMinor,
      build: options.build ?? defaults.build,
      tcb: options.tcb ?? defaults.tcb,
      maxAsid: options.maxAsid ?? defaults.maxAsid,
    };
    return new SoftwareSecureProcessor(
      createPlatformState(new StateFiles(stateDir), options.lab, config),
      options,
    );
  }

  /** Opens the platform persisted in `stateDir`, checking its keys and chains (SevStateStoreError if broken). */
  static open(stateDir: string, options: OpenProcessorOptions = {}): SoftwareSecureProcessor {
    return new SoftwareSecureProcessor(openPlatformState(new StateFiles(stateDir)), options);
  }

  /** Opens the platform in `stateDir`, creating it with `options.lab` if there is none yet. */
  static openOrCreate(
    stateDir: string,
    options: CreateProcessorOptions & OpenProcessorOptions,
  ): SoftwareSecureProcessor {
    if (new StateFiles(stateDir).exists('platform.json'))
      return SoftwareSecureProcessor.open(stateDir, options);
    return SoftwareSecureProcessor.create(stateDir, options);
  }

  /** The state directory. */
  get stateDir(): string {
    return this.#fw.store.files.dir;
  }

  /** Fixed facts (product line, firmware version, TCB, ASIDs). */
  get config(): PlatformConfig {
    return this.#fw.config;
  }

  /** A handle object for a guest context (INVALID_GUEST if there is none). */
  guest(ref: GuestRef): SevGuest {
    return new SevGuest(this.#fw, this.#fw.guest('GUEST_STATUS', ref));
  }

  // ── platform commands ────────────────────────────────────────────────────────────────────────────

  /** INIT: UNINIT → INIT (`es`: enable SEV-ES guests, default true). */
  init(options?: { readonly es?: boolean }): void {
    platform.init(this.#fw, options);
  }
  /** SHUTDOWN: → UNINIT, destroying every guest. */
  shutdown(): void {
    platform.shutdown(this.#fw);
  }
  /** PLATFORM_RESET (UNINIT): new self-owned OCA, PEK and PDH. */
  platformReset(): void {
    platform.platformReset(this.#fw);
  }
  /** PLATFORM_STATUS. */
  platformStatus(): platform.SevPlatformStatus {
    return platform.platformStatus(this.#fw);
  }
  /** PEK_GEN (INIT): new OCA (self-owned), PEK and PDH. */
  pekGen(): void {
    platform.pekGen(this.#fw);
  }
  /** PDH_GEN (INIT, WORKING): new PDH. */
  pdhGen(): void {
    platform.pdhGen(this.#fw);
  }
  /** PEK_CSR (INIT): the unsigned PEK certificate for an external OCA. */
  pekCsr(): Buffer {
    return platform.pekCsr(this.#fw);
  }
  /** PEK_CERT_IMPORT (INIT): take ownership with the OCA-signed PEK and the OCA certificate. */
  pekCertImport(pek: Uint8Array, oca: Uint8Array): void {
    platform.pekCertImport(this.#fw, pek, oca);
  }
  /** PDH_CERT_EXPORT (INIT, WORKING): PDH and PEK ‖ OCA ‖ CEK. */
  pdhCertExport(): platform.SevPdhCertExport {
    return platform.pdhCertExport(this.#fw);
  }
  /** GET_ID: the 64-byte chip id. */
  getId(): Buffer {
    return platform.getId(this.#fw);
  }
  /** DF_FLUSH: ASIDs released by DEACTIVATE become reusable (needs {@link wbinvd} first). */
  dfFlush(): void {
    platform.dfFlush(this.#fw);
  }
  /** The host's WBINVD on all cores (not a firmware command; DF_FLUSH requires it after DEACTIVATE). */
  wbinvd(): void {
    platform.wbinvd(this.#fw);
  }
  /** SNP_INIT (UNINIT, before INIT): enable SNP guests. */
  snpInit(): void {
    platform.snpInit(this.#fw);
  }

  // ── guest administration ─────────────────────────────────────────────────────────────────────────

  /** ACTIVATE: bind an ASID (the lowest free one when omitted); returns it. */
  activate(guest: GuestRef, asid?: number): number {
    return admin.activate(this.#fw, guest, asid);
  }
  /** DEACTIVATE: release the ASID. */
  deactivate(guest: GuestRef): void {
    admin.deactivate(this.#fw, guest);
  }
  /** DECOMMISSION: delete an inactive guest and its memory. */
  decommission(guest: GuestRef): void {
    admin.decommission(this.#fw, guest);
  }
  /** GUEST_STATUS. */
  guestStatus(guest: GuestRef): admin.SevGuestStatus {
    return admin.guestStatus(this.#fw, guest);
  }
  /** DBG_DECRYPT (refused under NODBG). */
  dbgDecrypt(guest: GuestRef, gpa: number, length: number): Buffer {
    return admin.dbgDecrypt(this.#fw, guest, gpa, length);
  }
  /** DBG_ENCRYPT (refused under NODBG). */
  dbgEncrypt(guest: GuestRef, gpa: number, bytes: Uint8Array): void {
    admin.dbgEncrypt(this.#fw, guest, gpa, bytes);
  }

  // ── guest contexts kept outside the firmware ─────────────────────────────────────────────────────

  /**
   * The guest's context sealed for safekeeping outside this process (format in
   * `commands/guest-context.ts`): AES-256-GCM under a key derived from the chip secret, bound to this
   * chip. The guest stays in the firmware unchanged. SEV and SEV-ES guests in LSECRET, RUNNING, SUPDATE,
   * RUPDATE or SENT; LUPDATE and SNP guests are refused (`SevGuestContextError`, `not-exportable`).
   */
  exportGuest(guest: GuestRef): Buffer {
    return context.exportGuest(this.#fw, guest);
  }

  /**
   * Takes back a context {@link exportGuest} sealed on this chip, in the state, handle and ASID it had
   * (as if the firmware had held it all along). Refused with `SevGuestContextError`: truncated,
   * malformed, another format version, sealed by another chip, changed, handle or ASID in use.
   */
  importGuest(sealed: Uint8Array): SevGuest {
    return new SevGuest(this.#fw, context.importGuest(this.#fw, sealed));
  }

  // ── SEV / SEV-ES launch ──────────────────────────────────────────────────────────────────────────

  /** LAUNCH_START: a new guest from the owner's GODH and session blob. */
  launchStart(input: launch.LaunchStartInput): SevGuest {
    return new SevGuest(this.#fw, launch.launchStart(this.#fw, input));
  }
  /** LAUNCH_UPDATE_DATA: measure and encrypt [gpa, gpa + length). */
  launchUpdateData(guest: GuestRef, gpa: number, length: number): void {
    launch.launchUpdateData(this.#fw, guest, gpa, length);
  }
  /** LAUNCH_UPDATE_VMSA (SEV-ES): measure one vCPU's VMSA; returns its vCPU index. */
  launchUpdateVmsa(guest: GuestRef, vmsa: Uint8Array): number {
    return launch.launchUpdateVmsa(this.#fw, guest, vmsa);
  }
  /** LAUNCH_MEASURE: the 48-byte measurement blob. */
  launchMeasure(guest: GuestRef): launch.SevLaunchMeasurement {
    return launch.launchMeasure(this.#fw, guest);
  }
  /** LAUNCH_SECRET: inject a guest owner's packet at `gpa`. */
  launchSecret(guest: GuestRef, packet: GuestPacketInput): void {
    launch.launchSecret(this.#fw, guest, packet);
  }
  /** LAUNCH_FINISH: the guest runs. */
  launchFinish(guest: GuestRef): void {
    launch.launchFinish(this.#fw, guest);
  }

  // ── migration ────────────────────────────────────────────────────────────────────────────────────

  /** SEND_START: session blob for the target (see `SendStartTarget`, `sendTargetFromQemu`). */
  sendStart(guest: GuestRef, target: SendStartTarget): transport.SevSendStart {
    return transport.sendStart(this.#fw, guest, target);
  }
  /** SEND_UPDATE_DATA: one packet with the guest bytes at [gpa, gpa + length). */
  sendUpdateData(guest: GuestRef, gpa: number, length: number): transport.SevTransportPacket {
    return transport.sendUpdateData(this.#fw, guest, gpa, length);
  }
  /** SEND_UPDATE_VMSA (SEV-ES): one vCPU's state. */
  sendUpdateVmsa(guest: GuestRef, vcpu: number): transport.SevTransportPacket {
    return transport.sendUpdateVmsa(this.#fw, guest, vcpu);
  }
  /** SEND_FINISH: the source context is SENT. */
  sendFinish(guest: GuestRef): { readonly packets: number } {
    return transport.sendFinish(this.#fw, guest);
  }
  /** SEND_CANCEL: back to RUNNING. */
  sendCancel(guest: GuestRef): void {
    transport.sendCancel(this.#fw, guest);
  }
  /** RECEIVE_START: a new guest from the source's PDH and session blob. */
  receiveStart(input: transport.ReceiveStartInput): SevGuest {
    return new SevGuest(this.#fw, transport.receiveStart(this.#fw, input));
  }
  /** RECEIVE_UPDATE_DATA: verify and place one packet at `gpa` (tampered or replayed: BAD_MEASUREMENT). */
  receiveUpdateData(guest: GuestRef, packet: GuestPacketInput): void {
    transport.receiveUpdateData(this.#fw, guest, packet);
  }
  /** RECEIVE_UPDATE_VMSA (SEV-ES): restore one vCPU's state. */
  receiveUpdateVmsa(
    guest: GuestRef,
    packet: Omit<GuestPacketInput, 'gpa'> & { readonly vcpu: number },
  ): void {
    transport.receiveUpdateVmsa(this.#fw, guest, packet);
  }
  /** RECEIVE_FINISH: the guest runs. */
  receiveFinish(guest: GuestRef): { readonly packets: number } {
    return transport.receiveFinish(this.#fw, guest);
  }

  // ── SEV-SNP ──────────────────────────────────────────────────────────────────────────────────────

  /** SNP_LAUNCH_START: a new SNP guest. */
  snpLaunchStart(input: snp.SnpLaunchStartInput): SevGuest {
    return new SevGuest(this.#fw, snp.snpLaunchStart(this.#fw, input));
  }
  /** SNP_LAUNCH_UPDATE: pages of one type at `gpa` (4 KiB aligned). */
  snpLaunchUpdate(guest: GuestRef, gpa: number, length: number, pageType: snp.SnpMemoryPageType): void {
    snp.snpLaunchUpdate(this.#fw, guest, gpa, length, pageType);
  }
  /** SNP_LAUNCH_UPDATE of a VMSA page; returns the vCPU index. */
  snpLaunchUpdateVmsa(guest: GuestRef, vmsa: Uint8Array): number {
    return snp.snpLaunchUpdateVmsa(this.#fw, guest, vmsa);
  }
  /** SNP_LAUNCH_FINISH with optional HOST_DATA. */
  snpLaunchFinish(guest: GuestRef, options?: { readonly hostData?: Uint8Array }): void {
    snp.snpLaunchFinish(this.#fw, guest, options);
  }

  // ── identity, in the formats verifiers read (available in every platform state) ─────────────────

  /** The full SEV chain (PDH, PEK, OCA, CEK, ASK, ARK) decoded. */
  certificateChain(): SevCertificateChain {
    return exportsOf.certificateChain(this.#fw.store);
  }
  /** ASK ‖ ARK bytes. */
  amdCertChain(): Buffer {
    return exportsOf.amdCertChain(this.#fw.store);
  }
  /** `sevctl export --full` bytes. */
  sevctlExport(): Buffer {
    return exportsOf.sevctlExport(this.#fw.store);
  }
  /** QEMU `query-sev-capabilities` object. */
  qemuSevCapabilities(): exportsOf.QemuSevCapabilitiesResult {
    return exportsOf.qemuSevCapabilities(this.#fw.store);
  }
  /** The SNP chain ARK → ASK → VCEK (X.509). */
  snpCertChain(): ReturnType<typeof exportsOf.snpCertChain> {
    return exportsOf.snpCertChain(this.#fw.store);
  }
  /** Roots a verifier must trust to accept this platform (its lab root). */
  trustAnchors(): LabTrustAnchors {
    return trustAnchorsOf({ ...this.#fw.store, generation: this.#fw.config.generation });
  }
}
