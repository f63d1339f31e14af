export {
  generateKeys,
  loadIdentity,
  loadTrustStore,
  keyIdOf,
  TrustStore,
  NATS_AUTH_FILE,
  type Identity,
  type TrustedKey,
  type GenerateKeysOptions,
} from './identity.js';
export { deployKeys, identitiesIn } from './deploy.js';
