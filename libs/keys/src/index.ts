export {
  generateKeys,
  loadIdentity,
  loadTrustStore,
  keyIdOf,
  TrustStore,
  NATS_AUTH_FILE,
  TRUST_FILE,
  type Identity,
  type TrustedKey,
  type GenerateKeysOptions,
} from './identity.js';
export { deployKeys, identitiesIn } from './deploy.js';
export { guestAgentIdentityFromSecrets, guestAgentSecretEntries, type SecretEntry } from './launch-secret.js';
