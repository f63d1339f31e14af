import { decodeSevGuestPolicy, type SevGuestPolicy } from '@ccm/sev';
import { asFirmware, ensure } from '../errors.js';
import type { Firmware } from '../firmware.js';
import type { SevCommandName } from '../status.js';

/** True when firmware `a.b` is at least the policy's API_MAJOR.API_MINOR. */
export function apiAtLeast(major: number, minor: number, policy: SevGuestPolicy): boolean {
  return major > policy.apiMajor || (major === policy.apiMajor && minor >= policy.apiMinor);
}

/**
 * What every platform checks before it creates a guest context from a policy (LAUNCH_START,
 * RECEIVE_START): reserved bits zero (INVALID_PARAM), the platform's API at least the policy's minimum
 * (POLICY_FAILURE), SEV-ES initialised when the policy has ES (POLICY_FAILURE).
 */
export function checkGuestPolicy(fw: Firmware, command: SevCommandName, policy: number): SevGuestPolicy {
  const decoded = asFirmware(command, () => decodeSevGuestPolicy(policy), 'INVALID_PARAM');
  ensure(
    apiAtLeast(fw.config.apiMajor, fw.config.apiMinor, decoded),
    'POLICY_FAILURE',
    command,
    `policy needs firmware API ${decoded.apiMajor}.${decoded.apiMinor}`,
    'api-version',
  );
  ensure(
    !decoded.encryptedState || fw.esInitialized,
    'POLICY_FAILURE',
    command,
    'policy has ES but the platform was initialised without SEV-ES',
    'es-not-initialised',
  );
  return decoded;
}
