import {
  decodeGuestPolicy,
  SNP_PAGE_SIZE,
  SNP_REPORT_SIZE,
  SnpLaunchDigest,
  type SnpPageType,
} from '@ccm/sev';
import { asFirmware, ensure, SevFirmwareLengthError } from '../errors.js';
import type { Firmware, GuestRef } from '../firmware.js';
import type { GuestContext, SnpGuestContext } from '../guest/context.js';
import { buildAttestationReport } from './snp-report.js';

/** SNP_LAUNCH_START inputs. */
export interface SnpLaunchStartInput {
  /** The 64-bit SNP guest policy (bit 17 must be set). */
  readonly policy: bigint;
  readonly memoryBytes: number;
}

/** Page types SNP_LAUNCH_UPDATE takes from guest memory (VMSAs go through {@link snpLaunchUpdateVmsa}). */
export type SnpMemoryPageType = Exclude<SnpPageType, 'VMSA'>;

/** Size of MSG_REPORT_REQ: REPORT_DATA 64 ‖ LE32 VMPL ‖ 28 reserved. */
export const SNP_REPORT_REQUEST_SIZE = 96;
/** Header of MSG_REPORT_RSP before the report: LE32 STATUS ‖ LE32 REPORT_SIZE ‖ 24 reserved. */
export const SNP_REPORT_RESPONSE_HEADER_SIZE = 32;

function snpGuest(fw: Firmware, command: 'SNP_LAUNCH_UPDATE' | 'SNP_LAUNCH_FINISH', ref: GuestRef) {
  const ctx = fw.guest(command, ref);
  fw.requireKind(ctx, command, 'snp');
  fw.requireGuestState(ctx, command, 'LUPDATE');
  return ctx as GuestContext & { snp: SnpGuestContext };
}

/**
 * SNP_LAUNCH_START: SNP_INIT must have run (INVALID_PLATFORM_STATE); the policy must be well formed
 * (INVALID_PARAM) and its ABI minimum met (POLICY_FAILURE). Creates a context with a fresh VEK and a
 * launch digest of 48 zero bytes.
 */
export function snpLaunchStart(fw: Firmware, input: SnpLaunchStartInput): GuestContext {
  const command = 'SNP_LAUNCH_START';
  fw.requirePlatform(command, 'INIT', 'WORKING');
  ensure(fw.snpInitialized, 'INVALID_PLATFORM_STATE', command, 'SNP_INIT has not run');
  const policy = asFirmware(command, () => decodeGuestPolicy(input.policy), 'INVALID_PARAM');
  const { apiMajor, apiMinor } = fw.config;
  const abiOk = apiMajor > policy.abiMajor || (apiMajor === policy.abiMajor && apiMinor >= policy.abiMinor);
  ensure(
    abiOk,
    'POLICY_FAILURE',
    command,
    `policy needs ABI ${policy.abiMajor}.${policy.abiMinor}`,
    'api-version',
  );
  return fw.addGuest(command, {
    kind: 'snp',
    state: 'LUPDATE',
    policy: Number(input.policy & 0xffffffffn),
    memoryBytes: input.memoryBytes,
    snp: {
      policyValue: input.policy,
      policy,
      digest: new SnpLaunchDigest(),
      hostData: Buffer.alloc(32),
      reportId: Buffer.from(fw.random(32)),
      launchTcb: fw.config.tcb,
    },
  });
}

/**
 * SNP_LAUNCH_UPDATE: 4 KiB-aligned pages of one type at `gpa`. NORMAL pages are measured (SHA-384 of the
 * contents into PAGE_INFO) and encrypted in place; ZERO pages are zeroed; SECRETS gets the firmware's
 * secrets page (random VMPCKs); UNMEASURED and CPUID pages are encrypted but only their type and GPA are
 * measured.
 */
export function snpLaunchUpdate(
  fw: Firmware,
  ref: GuestRef,
  gpa: number,
  length: number,
  pageType: SnpMemoryPageType,
): void {
  const command = 'SNP_LAUNCH_UPDATE';
  const ctx = snpGuest(fw, command, ref);
  fw.requireActive(ctx, command);
  fw.requireRange(ctx, command, gpa, length, SNP_PAGE_SIZE);
  const digest = ctx.snp.digest;
  const pages = length / SNP_PAGE_SIZE;
  switch (pageType) {
    case 'NORMAL':
      digest.updateNormal(BigInt(gpa), ctx.memory.encryptInPlace(gpa, length));
      return;
    case 'ZERO':
      ctx.memory.writePrivate(gpa, Buffer.alloc(length));
      break;
    case 'SECRETS':
      ensure(pages === 1, 'INVALID_LENGTH', command, 'the secrets page is one page');
      ctx.memory.writePrivate(gpa, secretsPage(fw));
      break;
    case 'UNMEASURED':
    case 'CPUID':
      ctx.memory.encryptInPlace(gpa, length);
      break;
  }
  digest.updateUnmeasured(pageType, BigInt(gpa), pages);
}

/** The SNP secrets page: VERSION 2 at 0x0, IMI_EN 0, FMS 0; VMPCK0–3 (32 bytes each) from 0x20. */
function secretsPage(fw: Firmware): Buffer {
  const page = Buffer.alloc(SNP_PAGE_SIZE);
  page.writeUInt32LE(2, 0);
  Buffer.from(fw.random(128)).copy(page, 0x20);
  return page;
}

/** SNP_LAUNCH_UPDATE of a VMSA page: measured at the fixed VMSA GPA, kept as the vCPU's state. */
export function snpLaunchUpdateVmsa(fw: Firmware, ref: GuestRef, vmsa: Uint8Array): number {
  const command = 'SNP_LAUNCH_UPDATE';
  const ctx = snpGuest(fw, command, ref);
  fw.requireActive(ctx, command);
  if (vmsa.length !== SNP_PAGE_SIZE)
    throw new SevFirmwareLengthError(command, 'VMSA', SNP_PAGE_SIZE, vmsa.length);
  ctx.snp.digest.updateVmsa(vmsa);
  ctx.vmsas.push(Buffer.from(vmsa));
  return ctx.vmsas.length - 1;
}

/** SNP_LAUNCH_FINISH: records HOST_DATA (32 bytes, zero by default) and starts the guest. */
export function snpLaunchFinish(
  fw: Firmware,
  ref: GuestRef,
  options: { readonly hostData?: Uint8Array } = {},
): void {
  const command = 'SNP_LAUNCH_FINISH';
  const ctx = snpGuest(fw, command, ref);
  if (options.hostData !== undefined) {
    const size = options.hostData.length;
    if (size !== 32) throw new SevFirmwareLengthError(command, 'HOST_DATA', 32, size);
    ctx.snp.hostData = Buffer.from(options.hostData);
  }
  ctx.state = 'RUNNING';
}

/**
 * SNP_GUEST_REQUEST carrying MSG_REPORT_REQ (REPORT_DATA 64 ‖ LE32 VMPL ‖ 28 reserved): answers
 * MSG_REPORT_RSP (LE32 STATUS ‖ LE32 REPORT_SIZE ‖ 24 reserved ‖ the VCEK-signed 1184-byte report).
 * Real requests travel encrypted under a VMPCK from the secrets page; here only the in-guest view can
 * call it, which stands in for that channel. VMPL above 3 or a non-zero reserved range: INVALID_PARAM.
 */
export function snpGuestRequestReport(fw: Firmware, ref: GuestRef, request: Uint8Array): Buffer {
  const command = 'SNP_GUEST_REQUEST';
  const ctx = fw.guest(command, ref);
  fw.requireKind(ctx, command, 'snp');
  fw.requireGuestState(ctx, command, 'RUNNING');
  if (request.length !== SNP_REPORT_REQUEST_SIZE) {
    throw new SevFirmwareLengthError(command, 'MSG_REPORT_REQ', SNP_REPORT_REQUEST_SIZE, request.length);
  }
  const req = Buffer.from(request);
  const vmpl = req.readUInt32LE(64);
  ensure(vmpl <= 3, 'INVALID_PARAM', command, `VMPL ${vmpl} is not 0..3`);
  ensure(
    req.subarray(68).every((b) => b === 0),
    'INVALID_PARAM',
    command,
    'reserved bytes are not zero',
  );
  const report = buildAttestationReport(
    fw,
    ctx as GuestContext & { snp: SnpGuestContext },
    req.subarray(0, 64),
    vmpl,
  );
  const header = Buffer.alloc(SNP_REPORT_RESPONSE_HEADER_SIZE);
  header.writeUInt32LE(0, 0);
  header.writeUInt32LE(SNP_REPORT_SIZE, 4);
  return Buffer.concat([header, report]);
}
