import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { findVectorsDir } from '../../__fixtures__/vectors-dir.js';

/** shared/vectors beside the repository. */
export const VECTORS_DIR = findVectorsDir(import.meta.dirname);

/** Bytes of a file under shared/vectors, e.g. `sev/amd-ca/rome/ark.cert`. */
export function readVector(path: string): Buffer {
  return readFileSync(resolve(VECTORS_DIR, path));
}

/** The parsed `sev/kat/sev-launch-kats.json`. */
export function readSevKats(): SevKats {
  return JSON.parse(readVector('sev/kat/sev-launch-kats.json').toString('utf8')) as SevKats;
}

export function hex(value: string): Buffer {
  return Buffer.from(value, 'hex');
}

/** The KAT file's shape, as far as the specs use it. */
export interface SevKats {
  kdf: [
    { key_in_hex: string; label: string; context_hex: string; out_len_bytes: number; expected_hex: string },
    { master_hex: string; kek_label: string; kek_hex: string; kik_label: string; kik_hex: string },
  ];
  hmac: { key_hex: string; msg_hex: string; expected_hex: string }[];
  launch_session: {
    name: string;
    z_hex: string;
    nonce_hex: string;
    wrap_iv_hex: string;
    tek_hex: string;
    tik_hex: string;
    policy_u32: number;
    expected: {
      wrap_tk_hex: string;
      wrap_mac_hex: string;
      policy_mac_hex: string;
      session_blob_128_bytes_hex: string;
    };
  }[];
  launch_measure: {
    name: string;
    tik_hex?: string;
    tik_file?: string;
    api_major: number;
    api_minor: number;
    build: number;
    policy_u32: number;
    ld_digest_hex?: string;
    mnonce_hex?: string;
    firmware_file?: string;
    kernel_file?: string;
    initrd_file?: string;
    cmdline?: string;
    helper_derived_hashes_table_176_bytes_hex?: string;
    vmsa_bsp_file?: string;
    vmsa_ap_file?: string;
    vcpus?: number;
    expected_measure_hex?: string;
    expected_launch_measure_blob_48_hex?: string;
  }[];
  launch_secret: {
    name: string;
    tik_file?: string;
    tek_file?: string;
    iv_hex?: string;
    launch_measure_blob_48_hex?: string;
    flags_u32?: number;
    secrets?: { guid: string; file: string }[];
    secrets_a?: { guid: string; file: string }[];
    secrets_b?: { guid: string; file: string }[];
    helper_derived_plaintext_table_hex?: string;
    expected_header_52_hex?: string;
    expected_payload_hex?: string;
    expected_payload_len?: number;
  }[];
  launch_digest_components: { name: string; ovmf_file: string; expected_hex: string }[];
}
