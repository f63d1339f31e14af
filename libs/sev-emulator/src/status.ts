/**
 * Firmware vocabulary of the software secure processor: status codes, command ids and the platform and
 * guest state machines, named as in the SEV API (55766) §4.3/§4.4 and ../shared/spec/sev-api.md §4.
 */

/**
 * Status codes the firmware returns (SEV API §4.4, spec §4.2). Names follow the spec; Linux's
 * `psp-sev.h` spells a few differently (see {@link SEV_STATUS_LINUX_ALIASES}).
 */
export const SEV_STATUS = {
  SUCCESS: 0x00,
  INVALID_PLATFORM_STATE: 0x01,
  INVALID_GUEST_STATE: 0x02,
  INVALID_CONFIG: 0x03,
  INVALID_LENGTH: 0x04,
  ALREADY_OWNED: 0x05,
  INVALID_CERTIFICATE: 0x06,
  POLICY_FAILURE: 0x07,
  INACTIVE: 0x08,
  INVALID_ADDRESS: 0x09,
  BAD_SIGNATURE: 0x0a,
  BAD_MEASUREMENT: 0x0b,
  ASID_OWNED: 0x0c,
  INVALID_ASID: 0x0d,
  WBINVD_REQUIRED: 0x0e,
  DF_FLUSH_REQUIRED: 0x0f,
  INVALID_GUEST: 0x10,
  INVALID_COMMAND: 0x11,
  ACTIVE: 0x12,
  HWERROR_PLATFORM: 0x13,
  HWERROR_UNSAFE: 0x14,
  UNSUPPORTED: 0x15,
  INVALID_PARAM: 0x16,
  RESOURCE_LIMIT: 0x17,
  SECURE_DATA_INVALID: 0x18,
} as const;

/** Name of a firmware status (the `code` of every {@link SevFirmwareError}). */
export type SevStatusName = keyof typeof SEV_STATUS;

/** Linux uapi spellings (`SEV_RET_*` without the prefix) of statuses the spec names differently. */
export const SEV_STATUS_LINUX_ALIASES: Readonly<Record<string, SevStatusName>> = {
  INVALID_LEN: 'INVALID_LENGTH',
  DFFLUSH_REQUIRED: 'DF_FLUSH_REQUIRED',
  HWSEV_RET_PLATFORM: 'HWERROR_PLATFORM',
  HWSEV_RET_UNSAFE: 'HWERROR_UNSAFE',
  INAVLID_CONFIG: 'INVALID_CONFIG',
};

/** The status name of a numeric code, or undefined for codes outside the table. */
export function sevStatusName(code: number): SevStatusName | undefined {
  return (Object.keys(SEV_STATUS) as SevStatusName[]).find((name) => SEV_STATUS[name] === code);
}

/** Command identifiers (SEV API §4.3, spec §4.1) of the commands this emulator implements. */
export const SEV_COMMAND = {
  INIT: 0x01,
  SHUTDOWN: 0x02,
  PLATFORM_RESET: 0x03,
  PLATFORM_STATUS: 0x04,
  PEK_GEN: 0x05,
  PEK_CSR: 0x06,
  PEK_CERT_IMPORT: 0x07,
  PDH_CERT_EXPORT: 0x08,
  PDH_GEN: 0x09,
  DF_FLUSH: 0x0a,
  GET_ID: 0x0c,
  DECOMMISSION: 0x20,
  ACTIVATE: 0x21,
  DEACTIVATE: 0x22,
  GUEST_STATUS: 0x23,
  LAUNCH_START: 0x30,
  LAUNCH_UPDATE_DATA: 0x31,
  LAUNCH_UPDATE_VMSA: 0x32,
  LAUNCH_MEASURE: 0x33,
  LAUNCH_SECRET: 0x34,
  LAUNCH_FINISH: 0x35,
  SEND_START: 0x40,
  SEND_UPDATE_DATA: 0x41,
  SEND_UPDATE_VMSA: 0x42,
  SEND_FINISH: 0x43,
  SEND_CANCEL: 0x44,
  RECEIVE_START: 0x50,
  RECEIVE_UPDATE_DATA: 0x51,
  RECEIVE_UPDATE_VMSA: 0x52,
  RECEIVE_FINISH: 0x53,
  DBG_DECRYPT: 0x60,
  DBG_ENCRYPT: 0x61,
  SNP_INIT: 0x81,
  SNP_GUEST_REQUEST: 0x94,
  SNP_LAUNCH_START: 0xa0,
  SNP_LAUNCH_UPDATE: 0xa1,
  SNP_LAUNCH_FINISH: 0xa2,
} as const;

/** Name of an implemented command. */
export type SevCommandName = keyof typeof SEV_COMMAND;

/** Platform states (SEV API §5.1.2). */
export const SEV_PLATFORM_STATE = {
  /** After reset or SHUTDOWN: only INIT, PLATFORM_RESET, PLATFORM_STATUS, GET_ID, SNP_INIT. */
  UNINIT: 0,
  /** Initialised, no guest context exists: owner commands (PEK_GEN, PEK_CSR, …) are allowed. */
  INIT: 1,
  /** At least one guest context exists: key rotation that would orphan it is refused. */
  WORKING: 2,
} as const;

/** Name of a platform state. */
export type SevPlatformStateName = keyof typeof SEV_PLATFORM_STATE;

/** Guest states (GSTATE, SEV API §6.1.1); SNP guests use LUPDATE and RUNNING. */
export const SEV_GUEST_STATE = {
  /** No context (a handle that was decommissioned). */
  UNINIT: 0,
  /** Launching: plaintext may be loaded and measured. */
  LUPDATE: 1,
  /** Measured: only LAUNCH_SECRET and LAUNCH_FINISH. */
  LSECRET: 2,
  /** Running. */
  RUNNING: 3,
  /** Being sent (between SEND_START and SEND_FINISH). */
  SUPDATE: 4,
  /** Being received (between RECEIVE_START and RECEIVE_FINISH). */
  RUPDATE: 5,
  /** Sent: the context may only be decommissioned. */
  SENT: 6,
} as const;

/** Name of a guest state. */
export type SevGuestStateName = keyof typeof SEV_GUEST_STATE;
