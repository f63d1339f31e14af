import { createHash } from 'node:crypto';
import { encodeAmdCertificateBody, type AmdSigningKeyCertificate } from './amd-cert.js';
import { toHex } from './bytes.js';
import { SevUsage } from './constants.js';
import { SevUntrustedRootError } from './errors.js';
import { amdSignatureHash } from './signing.js';
import type { SevHashName } from './algorithms.js';

/** AMD EPYC product lines that issue SEV certificate chains, oldest first. */
export const SEV_GENERATIONS = ['naples', 'rome', 'milan', 'genoa', 'turin'] as const;
/** One AMD EPYC product line. */
export type SevGeneration = (typeof SEV_GENERATIONS)[number];

/** What identifies AMD's root for a product line. */
export interface AmdRootPin {
  readonly generation: SevGeneration;
  /** KEY_ID of the ARK (hex of the 16 raw bytes). */
  readonly arkKeyIdHex: string;
  /** KEY_ID of the ASK the ARK signs. */
  readonly askKeyIdHex: string;
  /** SHA-256 of the ARK's signed body (header, exponent, modulus): pins the key, not just its id. */
  readonly arkBodySha256Hex: string;
  /** RSA size of the ARK and ASK. */
  readonly modulusBits: 2048 | 4096;
}

/**
 * AMD's legacy-format roots. Key ids from the SEV API / KDS; body digests computed from AMD's published
 * `ask_ark_<product>.cert` files (the Naples digest also matches the ARK as first published, without
 * its signature).
 */
export const AMD_ROOT_PINS: Readonly<Record<SevGeneration, AmdRootPin>> = Object.freeze({
  naples: {
    generation: 'naples',
    arkKeyIdHex: '1bb987c359494606b174945601c9ea5b',
    askKeyIdHex: 'e139970cfc464377ae61b289e2f9e96e',
    arkBodySha256Hex: '8efddcaaf84990cf6354d93637be270220cf15797332b3d918c3b8cc77349f31',
    modulusBits: 2048,
  },
  rome: {
    generation: 'rome',
    arkKeyIdHex: 'e6002122fb58419399d15fee7b131351',
    askKeyIdHex: 'c6cbcf145b3146f498e40ecb4ad4fded',
    arkBodySha256Hex: 'ae2456af6c6ad234badd6c75e58915be61568286766083853bf668e6e23977c3',
    modulusBits: 4096,
  },
  milan: {
    generation: 'milan',
    arkKeyIdHex: '94c38e4177d0479292a7ae671d083fb6',
    askKeyIdHex: '73478c05cc174bfeb06e718fa75dc3c8',
    arkBodySha256Hex: '263b13fd3170c6ffbb0b4f01f09848dc08a8dc1e9637d47e42cbe6c135e4af12',
    modulusBits: 4096,
  },
  genoa: {
    generation: 'genoa',
    arkKeyIdHex: '9f9d4a8fe761456599f6946c4c010f3a',
    askKeyIdHex: 'acbb4ad21acc436fb3e932f812cd01b0',
    arkBodySha256Hex: '973df6265e1b40cf8883305c1f6a6cd254979446acb40bd396946b2f19e751e9',
    modulusBits: 4096,
  },
  turin: {
    generation: 'turin',
    arkKeyIdHex: 'd05c3a8bde484904b49552422ceb3942',
    askKeyIdHex: '15051693f7304d65a527b4a7f3f7cb77',
    arkBodySha256Hex: '89327696f8082b20f5a588565adc26d478e1c6d56153c1de656e63396b8f8e20',
    modulusBits: 4096,
  },
});

/** Generation whose ARK or ASK has this KEY_ID, if any. */
export function sevGenerationOfKeyId(keyId: Uint8Array): SevGeneration | undefined {
  const hex = toHex(keyId);
  return SEV_GENERATIONS.find(
    (g) => AMD_ROOT_PINS[g].arkKeyIdHex === hex || AMD_ROOT_PINS[g].askKeyIdHex === hex,
  );
}

/**
 * Identifies the product line from an ARK: KEY_ID must be a pinned ARK id and the key must be the pinned
 * key (a forged ARK reusing AMD's id fails). Throws SevUntrustedRootError. Does not check the
 * self-signature (see `verifySevChain`).
 */
export function identifySevGeneration(ark: AmdSigningKeyCertificate): SevGeneration {
  if (ark.usage !== SevUsage.ARK) throw new SevUntrustedRootError('KEY_USAGE is not ARK');
  const hex = toHex(ark.keyId);
  const generation = SEV_GENERATIONS.find((g) => AMD_ROOT_PINS[g].arkKeyIdHex === hex);
  if (!generation) throw new SevUntrustedRootError(`unknown KEY_ID ${hex}`);
  const digest = createHash('sha256').update(encodeAmdCertificateBody(ark)).digest('hex');
  if (digest !== AMD_ROOT_PINS[generation].arkBodySha256Hex) {
    throw new SevUntrustedRootError(`KEY_ID ${hex} (${generation}) but a different key`);
  }
  return generation;
}

/** RSA-PSS parameters AMD uses for the product line's ARK/ASK/CEK signatures. */
export function sevGenerationSignatureParams(generation: SevGeneration): {
  hash: SevHashName;
  saltLength: number;
} {
  const hash = amdSignatureHash(AMD_ROOT_PINS[generation].modulusBits);
  return { hash, saltLength: hash === 'sha256' ? 32 : 48 };
}
