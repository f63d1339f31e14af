/**
 * SEV / SEV-ES half of libs/sev: the legacy certificate formats and chain, the launch protocol (GODH,
 * KDF, session blob, measurement, secret injection) and the migration transport parameters.
 */
export * from './errors.js';
export * from './constants.js';
export {
  parseSevAlgorithm,
  parseSevCurve,
  parseSevUsage,
  sevAlgorithmHash,
  sevAlgorithmKind,
  sevAlgorithmName,
  sevUsageName,
  type SevAlgorithmKind,
  type SevHashName,
} from './algorithms.js';
export * from './public-key.js';
export * from './signature-area.js';
export * from './sev-cert.js';
export * from './amd-cert.js';
export * from './signing.js';
export * from './generation.js';
export * from './chain.js';
export * from './bundles.js';
export * from './kdf.js';
export * from './policy.js';
export * from './transport-crypto.js';
export * from './session.js';
export * from './key-agreement.js';
export * from './guid.js';
export * from './ovmf.js';
export * from './hashes-table.js';
export * from './measurement.js';
export * from './secret-table.js';
export * from './packet.js';
export * from './launch-secret.js';
export * from './launch-session.js';
export * from './migration.js';
export * from './transport-session.js';
export * from './direct-boot.js';
