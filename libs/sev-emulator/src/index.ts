/**
 * @ccm/sev-emulator — a software AMD secure processor for hosts without SEV hardware. A faithful model,
 * not a stub: real byte formats (libs/sev), real keys, the firmware's state machines and status codes,
 * guest memory as real bytes encrypted per guest. Its CEK and VCEK are endorsed by a lab ARK/ASK it
 * generates, so only verifiers that explicitly trust that lab root accept it.
 */
export {
  SoftwareSecureProcessor,
  type CreateProcessorOptions,
  type OpenProcessorOptions,
} from './processor.js';
export { LabAuthority, type CreateLabOptions } from './lab/lab-authority.js';
export { labPin, type LabTrustAnchors, mergeTrustAnchors } from './lab/trust.js';
export { SevGuest, type HostMemoryView, type InGuestAccess, type InGuestMemory } from './guest/sev-guest.js';
export type { SevGuestKind } from './guest/context.js';
export type { GuestRef } from './firmware.js';
export { MAX_GUEST_MEMORY_BYTES } from './firmware.js';
export { PAGE_SIZE } from './guest/memory.js';
export type { PlatformConfig } from './platform/platform-store.js';
export type { QemuSevCapabilitiesResult } from './platform/chain-export.js';
export type { SevPlatformStatus, SevPdhCertExport } from './commands/platform.js';
export type { SevGuestStatus } from './commands/guest-admin.js';
export type { LaunchStartInput, SevLaunchMeasurement } from './commands/launch.js';
export type { GuestPacketInput } from './commands/packets.js';
export type { ReceiveStartInput, SevSendStart, SevTransportPacket } from './commands/transport.js';
export { sendTargetFromQemu, type SendStartTarget } from './commands/send-target.js';
export {
  SNP_REPORT_REQUEST_SIZE,
  SNP_REPORT_RESPONSE_HEADER_SIZE,
  type SnpLaunchStartInput,
  type SnpMemoryPageType,
} from './commands/snp.js';
export { EMULATED_CPUID, EMULATED_REPORT_VERSION } from './commands/snp-report.js';
export {
  SevFirmwareError,
  SevFirmwareLengthError,
  SevGuestContextError,
  SevStateStoreError,
  isSevFirmwareError,
  isSevGuestContextError,
  type SevGuestContextFault,
} from './errors.js';
export { readGuestContextFile, writeGuestContextFile } from './store/context-file.js';
export {
  SEV_COMMAND,
  SEV_GUEST_STATE,
  SEV_PLATFORM_STATE,
  SEV_STATUS,
  SEV_STATUS_LINUX_ALIASES,
  sevStatusName,
  type SevCommandName,
  type SevGuestStateName,
  type SevPlatformStateName,
  type SevStatusName,
} from './status.js';
export {
  SIM_SNP_POLICY,
  launchSimSnpGuest,
  simGuestEvidence,
  simSnpMeasurement,
} from './guest/sim-snp-guest.js';
