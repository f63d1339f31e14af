import { encodeSevCertificate, type SevCertificate } from './sev-cert.js';
import {
  createGodhCertificate,
  createSevTransportSession,
  generateSevDhKeyPair,
  type SevDhKeyPair,
} from './key-agreement.js';
import {
  assertSevLaunchMeasurement,
  type SevMeasurementBlob,
  type SevPlatformVersion,
} from './measurement.js';
import { sealSevLaunchSecret, type SevLaunchSecretPacket } from './launch-secret.js';
import { sevPolicyValue, type SevGuestPolicy } from './policy.js';
import { buildSevSecretTable, type SevSecretEntry } from './secret-table.js';
import { encodeSevSession, type SevSessionBlob, type SevTransportKeys } from './session.js';
import type { SevRandomSource } from './transport-crypto.js';

/**
 * The guest owner's side of an SEV/SEV-ES launch as typed steps: `startSevLaunch` → `SevLaunchStarted`
 * (hand GODH + session to QEMU) → `verifyMeasurement` → `SevLaunchMeasured` → `sealSecret`. Each object
 * offers only the next legal step; TEK/TIK stay inside.
 */

/** What the key broker must persist to resume a launch across restarts (contains secret keys). */
export interface SevLaunchSnapshot {
  readonly policy: number;
  readonly keys: SevTransportKeys;
  readonly godhCertificate: SevCertificate;
  readonly session: SevSessionBlob;
}

/** QEMU `-object sev-guest` inputs: the files hold base64 text of the GODH cert and the session blob. */
export interface QemuSevGuestLaunchInputs {
  readonly policy: number;
  readonly dhCertBase64: string;
  readonly sessionBase64: string;
}

/** Inputs of `startSevLaunch`. */
export interface StartSevLaunchInput {
  /** The platform's PDH certificate, from a chain the caller verified (`verifySevChain`). */
  readonly pdh: SevCertificate;
  readonly policy: number | Partial<SevGuestPolicy>;
  /** Fresh P-384 pair when omitted. */
  readonly godh?: SevDhKeyPair;
  readonly random?: SevRandomSource;
}

/** Generates GODH, agrees Z with the PDH, picks TEK/TIK and wraps them: the LAUNCH_START inputs. */
export function startSevLaunch(input: StartSevLaunchInput): SevLaunchStarted {
  const policy = sevPolicyValue(input.policy);
  const godh = input.godh ?? generateSevDhKeyPair();
  const { session, keys } = createSevTransportSession({
    privateKey: godh.privateKey,
    peer: input.pdh,
    policy,
    random: input.random,
  });
  return new SevLaunchStarted({
    policy,
    keys,
    session,
    godhCertificate: createGodhCertificate(godh.publicKey),
  });
}

/** After LAUNCH_START: waiting for the LAUNCH_MEASURE blob. */
export class SevLaunchStarted {
  readonly #state: SevLaunchSnapshot;

  /** Rebuilds the step from a snapshot (see `snapshot`). */
  constructor(state: SevLaunchSnapshot) {
    this.#state = state;
  }

  get policy(): number {
    return this.#state.policy;
  }

  get godhCertificate(): SevCertificate {
    return this.#state.godhCertificate;
  }

  get session(): SevSessionBlob {
    return this.#state.session;
  }

  /** What QEMU's `sev-guest` object needs (`policy`, `dh-cert-file`, `session-file` contents). */
  qemuInputs(): QemuSevGuestLaunchInputs {
    return {
      policy: this.#state.policy,
      dhCertBase64: encodeSevCertificate(this.#state.godhCertificate).toString('base64'),
      sessionBase64: encodeSevSession(this.#state.session).toString('base64'),
    };
  }

  /** Everything needed to resume; store it encrypted. */
  snapshot(): SevLaunchSnapshot {
    return this.#state;
  }

  /**
   * Checks the LAUNCH_MEASURE blob against the expected GCTX.LD (`computeSevLaunchDigest`) and the
   * platform's firmware version; throws SevBadMeasurementError on a mismatch.
   */
  verifyMeasurement(
    blob: Uint8Array | SevMeasurementBlob,
    expected: { readonly digest: Uint8Array; readonly platform: SevPlatformVersion },
  ): SevLaunchMeasured {
    const measured = assertSevLaunchMeasurement(blob, {
      ...expected.platform,
      tik: this.#state.keys.tik,
      policy: this.#state.policy,
      digest: expected.digest,
    });
    return new SevLaunchMeasured(this.#state.keys, measured, expected.platform);
  }
}

/** After a verified LAUNCH_MEASURE: secrets may be sealed for this launch. */
export class SevLaunchMeasured {
  readonly #keys: SevTransportKeys;

  constructor(
    keys: SevTransportKeys,
    readonly measurement: SevMeasurementBlob,
    readonly platform: SevPlatformVersion,
  ) {
    this.#keys = keys;
  }

  /**
   * Seals a LAUNCH_SECRET packet bound to this MEASURE: a list of entries is built into an EFI secret
   * table (sevctl convention); bytes are sealed as given.
   */
  sealSecret(
    secret: Uint8Array | readonly SevSecretEntry[],
    options: { readonly iv?: Uint8Array; readonly gpa?: number; readonly random?: SevRandomSource } = {},
  ): SevLaunchSecretPacket {
    const plaintext = secret instanceof Uint8Array ? secret : buildSevSecretTable(secret);
    return sealSevLaunchSecret({
      keys: this.#keys,
      measure: this.measurement.measure,
      plaintext,
      platform: this.platform,
      ...options,
    });
  }
}
