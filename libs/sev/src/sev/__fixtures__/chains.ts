import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { decodeAmdCertificate, type AmdSigningKeyCertificate } from '../amd-cert.js';
import type { SevCertificateChain } from '../chain.js';
import { SevAlgorithm, SevUsage, type SevUsageCode } from '../constants.js';
import { sevPublicKeyFromKeyObject } from '../public-key.js';
import { createSevCertificate, decodeSevCertificate, type SevCertificate } from '../sev-cert.js';
import { signAmdCertificate, signSevCertificate } from '../signing.js';
import { readVector } from './vectors.js';

/** A real chain from shared/vectors: Naples and Rome platforms have PDH/PEK/OCA/CEK. */
export function realChain(platform: 'naples' | 'rome', amd: string = platform): SevCertificateChain {
  const sev = (role: string): SevCertificate =>
    decodeSevCertificate(readVector(`sev/platform/${platform}/${role}.cert`));
  const ca = (role: string): AmdSigningKeyCertificate =>
    decodeAmdCertificate(readVector(`sev/amd-ca/${amd}/${role}.cert`));
  return {
    pdh: sev('pdh'),
    pek: sev('pek'),
    oca: sev('oca'),
    cek: sev('cek'),
    ask: ca('ask'),
    ark: ca('ark'),
  };
}

/** A synthetic chain under a self-made 2048-bit ARK, with every private key (for signing tests). */
export interface SyntheticChain {
  readonly chain: SevCertificateChain;
  readonly keys: Record<'ark' | 'ask' | 'cek' | 'oca' | 'pek' | 'pdh', KeyObject>;
}

function ecCert(
  usage: SevUsageCode,
  key: KeyObject,
  algorithm: number = SevAlgorithm.ECDSA_SHA256,
): SevCertificate {
  return createSevCertificate({
    usage,
    algorithm: algorithm as typeof SevAlgorithm.ECDSA_SHA256,
    publicKey: sevPublicKeyFromKeyObject(key),
    apiMajor: 1,
    apiMinor: 55,
  });
}

export function syntheticChain(): SyntheticChain {
  const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const [ark, ask, cek, oca, pek, pdh] = [rsa(), rsa(), ec(), ec(), ec(), ec()];
  const amd = (
    usage: typeof SevUsage.ARK | typeof SevUsage.ASK,
    key: KeyObject,
    id: number,
  ): AmdSigningKeyCertificate => {
    const pub = sevPublicKeyFromKeyObject(key);
    if (pub.kind !== 'rsa') throw new Error('rsa expected');
    return {
      version: 1,
      keyId: new Uint8Array(16).fill(id),
      certifyingId: new Uint8Array(16).fill(0xa1),
      usage,
      publicExponentBits: 2048,
      modulusBits: 2048,
      publicExponent: pub.exponent,
      modulus: pub.modulus,
      signature: 0n,
    };
  };
  const arkCert = signAmdCertificate(amd(SevUsage.ARK, ark.publicKey, 0xa1), ark.privateKey);
  const askCert = signAmdCertificate(amd(SevUsage.ASK, ask.publicKey, 0xa2), ark.privateKey);
  const signer = (
    usage: SevUsageCode,
    privateKey: KeyObject,
    algorithm: number = SevAlgorithm.ECDSA_SHA256,
  ) => ({
    usage,
    algorithm: algorithm as typeof SevAlgorithm.ECDSA_SHA256,
    privateKey,
  });
  const cekCert = signSevCertificate(
    ecCert(SevUsage.CEK, cek.publicKey),
    0,
    signer(SevUsage.ASK, ask.privateKey, SevAlgorithm.RSA_SHA256),
  );
  const ocaCert = signSevCertificate(
    ecCert(SevUsage.OCA, oca.publicKey),
    0,
    signer(SevUsage.OCA, oca.privateKey),
  );
  let pekCert = signSevCertificate(
    ecCert(SevUsage.PEK, pek.publicKey),
    0,
    signer(SevUsage.OCA, oca.privateKey),
  );
  pekCert = signSevCertificate(pekCert, 1, signer(SevUsage.CEK, cek.privateKey));
  const pdhCert = signSevCertificate(
    ecCert(SevUsage.PDH, pdh.publicKey, SevAlgorithm.ECDH_SHA256),
    0,
    signer(SevUsage.PEK, pek.privateKey),
  );
  return {
    chain: { ark: arkCert, ask: askCert, cek: cekCert, oca: ocaCert, pek: pekCert, pdh: pdhCert },
    keys: {
      ark: ark.privateKey,
      ask: ask.privateKey,
      cek: cek.privateKey,
      oca: oca.privateKey,
      pek: pek.privateKey,
      pdh: pdh.privateKey,
    },
  };
}
