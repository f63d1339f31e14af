import { readFileSync } from 'node:fs';
import { CcmError, GuestErrorCodes, LAUNCH_SECRET_GUIDS } from '@ccm/contracts';
import { guestAgentIdentityFromSecrets, type Identity } from '@ccm/keys';
import { parseSevSecretTable, type SevSecretEntry } from '@ccm/sev';
import { type GuestAgentConfig } from '../config.js';

/**
 * The secrets an SEV/SEV-ES guest's attested launch injected: the EFI secret table at
 * CCM_GUEST_SECRET_TABLE (on hardware what OVMF left in the secret area; with the software secure
 * processor the guest's own copy of the page LAUNCH_SECRET wrote). A table that does not parse is
 * refused `SECRET_TABLE_INVALID`: the guest-agent does not start on a half-read launch secret.
 */
export function readSecretTable(path: string | undefined): SevSecretEntry[] {
  if (!path) throw new Error('CCM_GUEST_SEV=sev|sev-es needs CCM_GUEST_SECRET_TABLE (the guest secret area)');
  const bytes = readFileSync(path);
  try {
    return parseSevSecretTable(bytes);
  } catch (cause) {
    throw new CcmError(GuestErrorCodes.SecretTableInvalid, `${path}: ${(cause as Error).message}`, {
      retryable: false,
      details: { source: path, reason: (cause as Error).message },
      cause,
    });
  }
}

/** Whether this guest was launched attested as SEV/SEV-ES (it reads a secret table). */
const launchedAttested = (c: GuestAgentConfig) => c.CCM_GUEST_SEV === 'sev' || c.CCM_GUEST_SEV === 'sev-es';

/** The identity secret of the table ({@link LAUNCH_SECRET_GUIDS}.identity): the MAC key of its evidence. */
export function readIdentitySecret(path: string | undefined): Buffer {
  const entry = readSecretTable(path).find((e) => e.guid === LAUNCH_SECRET_GUIDS.identity);
  if (!entry || entry.data.length < 16) {
    throw new Error(`${path}: no identity secret (${LAUNCH_SECRET_GUIDS.identity}) in the secret table`);
  }
  return Buffer.from(entry.data);
}

/**
 * The guest-agent's service identity (NATS seed and envelope signing key) when its launch secret
 * carries it (the key-broker held it for this guest owner): then the keys dir, which a host can read
 * on the app disk, needs only the trust store. Undefined without an attested launch or when the table
 * carries none (the keys dir serves, as in the lab with CCM_SEV=off).
 */
export function guestAgentIdentityFromLaunch(c: GuestAgentConfig): Identity | undefined {
  if (!launchedAttested(c)) return undefined;
  const path = c.CCM_GUEST_SECRET_TABLE;
  return guestAgentIdentityFromSecrets(readSecretTable(path), path ?? 'CCM_GUEST_SECRET_TABLE');
}
