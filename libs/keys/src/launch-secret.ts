import { createPrivateKey, createPublicKey } from 'node:crypto';
import { CcmError, GuestErrorCodes, LAUNCH_SECRET_GUIDS } from '@ccm/contracts';
import { fromSeed } from '@nats-io/nkeys';
import { keyIdOf, type Identity } from './identity.js';

/** One entry of an EFI secret table (structurally libs/sev's `SevSecretEntry`). */
export interface SecretEntry {
  readonly guid: string;
  readonly data: Uint8Array;
}

/**
 * The guest-agent's service identity as entries of its launch's secret table: its Ed25519 signing key
 * (PKCS#8 DER, 48 bytes) and its NATS user seed (58 ASCII bytes). The key-broker seals them into the
 * LAUNCH_SECRET of a launch whose measurement the owner accepted, so only that guest reads them.
 */
export function guestAgentSecretEntries(identity: Identity): SecretEntry[] {
  return [
    {
      guid: LAUNCH_SECRET_GUIDS.guestAgentSigningKey,
      data: identity.signingKey.export({ format: 'der', type: 'pkcs8' }),
    },
    { guid: LAUNCH_SECRET_GUIDS.guestAgentNatsSeed, data: Uint8Array.from(identity.natsSeed) },
  ];
}

const invalid = (source: string, guid: string | undefined, reason: string, cause?: unknown) =>
  new CcmError(
    GuestErrorCodes.SecretTableInvalid,
    `${source}: ${guid ? `secret table entry ${guid}` : 'secret table'}: ${reason}`,
    { retryable: false, details: { source, ...(guid ? { guid } : {}), reason }, cause },
  );

/** The one entry of `guid`, if any; two of them is a malformed table. */
function single(entries: readonly SecretEntry[], guid: string, source: string): SecretEntry | undefined {
  const found = entries.filter((e) => e.guid === guid);
  if (found.length > 1) throw invalid(source, guid, `${found.length} entries with this GUID`);
  return found[0];
}

/**
 * The guest-agent's identity from its secret table's entries, or undefined when the table carries
 * none (the key-broker was not given the guest-agent's identity: the keys dir still serves). A table
 * with one of the two entries, a signing key that is not an Ed25519 PKCS#8 key or a seed that is not
 * a NATS user seed is refused `SECRET_TABLE_INVALID` naming the entry (`source` names the table).
 */
export function guestAgentIdentityFromSecrets(
  entries: readonly SecretEntry[],
  source: string,
): Identity | undefined {
  const sign = single(entries, LAUNCH_SECRET_GUIDS.guestAgentSigningKey, source);
  const seed = single(entries, LAUNCH_SECRET_GUIDS.guestAgentNatsSeed, source);
  if (!sign && !seed) return undefined;
  if (!sign) throw invalid(source, LAUNCH_SECRET_GUIDS.guestAgentSigningKey, 'missing beside the NATS seed');
  if (!seed) throw invalid(source, LAUNCH_SECRET_GUIDS.guestAgentNatsSeed, 'missing beside the signing key');
  let signingKey;
  try {
    signingKey = createPrivateKey({ key: Buffer.from(sign.data), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw invalid(source, sign.guid, 'not a PKCS#8 private key', cause);
  }
  if (signingKey.asymmetricKeyType !== 'ed25519') {
    throw invalid(source, sign.guid, `a ${signingKey.asymmetricKeyType} key, not Ed25519`);
  }
  const natsSeed = Uint8Array.from(seed.data);
  let natsPublicKey: string;
  try {
    natsPublicKey = fromSeed(natsSeed).getPublicKey();
  } catch (cause) {
    throw invalid(source, seed.guid, 'not a NATS NKEY seed', cause);
  }
  if (!natsPublicKey.startsWith('U')) throw invalid(source, seed.guid, 'not a NATS user seed');
  return {
    name: 'guest-agent',
    natsSeed,
    natsPublicKey,
    signingKey,
    keyId: keyIdOf(createPublicKey(signingKey)),
  };
}
