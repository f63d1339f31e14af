import { describe, expect, it } from 'vitest';
import { realChain } from './__fixtures__/chains.js';
import { readVector } from './__fixtures__/vectors.js';
import {
  decodeAmdCaChain,
  decodeQemuSevCapabilities,
  decodeSevctlExport,
  decodeSevPlatformCertChain,
  encodeAmdCaChain,
  encodeSevctlExport,
  encodeSevPlatformCertChain,
} from './bundles.js';
import { verifySevChain } from './chain.js';
import {
  SevInvalidCertificateError,
  SevInvalidLengthError,
  SevInvalidParamError,
  SevTruncatedError,
} from './errors.js';

const files = (gen: string, roles: string[], dir = 'platform') =>
  Buffer.concat(roles.map((r) => readVector(`sev/${dir}/${gen}/${r}.cert`)));

describe('chain bundles', () => {
  it.each(['naples', 'rome'])(
    '%s: PEK ‖ OCA ‖ CEK (PDH_CERT_EXPORT certs) round-trips and verifies',
    (gen) => {
      const bytes = files(gen, ['pek', 'oca', 'cek']);
      const chain = decodeSevPlatformCertChain(bytes);
      expect(encodeSevPlatformCertChain(chain).equals(bytes)).toBe(true);
    },
  );

  it.each(['naples', 'rome', 'milan', 'genoa', 'turin'])(
    '%s: ASK ‖ ARK (ask_ark_<product>.cert) round-trips',
    (gen) => {
      const bytes = files(gen, ['ask', 'ark'], 'amd-ca');
      expect(encodeAmdCaChain(decodeAmdCaChain(bytes)).equals(bytes)).toBe(true);
    },
  );

  it('ARK ‖ ASK in the wrong order and trailing bytes are refused', () => {
    expect(() => decodeAmdCaChain(files('rome', ['ark', 'ask'], 'amd-ca'))).toThrow(SevInvalidParamError);
    const extra = Buffer.concat([files('rome', ['ask', 'ark'], 'amd-ca'), Buffer.alloc(1)]);
    expect(() => decodeAmdCaChain(extra)).toThrow(SevInvalidLengthError);
    expect(() => decodeAmdCaChain(files('rome', ['ask'], 'amd-ca'))).toThrow(SevTruncatedError);
  });

  it('PEK ‖ OCA ‖ CEK out of order is refused by usage', () => {
    expect(() => decodeSevPlatformCertChain(files('rome', ['oca', 'pek', 'cek']))).toThrow(
      SevInvalidCertificateError,
    );
    expect(() => decodeSevPlatformCertChain(files('rome', ['pek', 'oca']))).toThrow(SevInvalidLengthError);
  });

  it.each(['naples', 'rome'])(
    '%s: sevctl export (plain and --full) decodes, verifies and re-encodes',
    (gen) => {
      const plain = files(gen, ['pdh', 'pek', 'oca', 'cek']);
      const full = Buffer.concat([plain, files(gen, ['ask', 'ark'], 'amd-ca')]);
      const decodedPlain = decodeSevctlExport(plain);
      expect(decodedPlain.ask).toBeUndefined();
      expect(encodeSevctlExport(decodedPlain).equals(plain)).toBe(true);
      const decodedFull = decodeSevctlExport(full);
      expect(encodeSevctlExport(decodedFull).equals(full)).toBe(true);
      const { ask, ark } = decodedFull;
      expect(verifySevChain({ ...decodedFull, ask: ask!, ark: ark! })).toMatchObject({
        ok: true,
        generation: gen,
      });
    },
  );

  it('sevctl export that is too short is refused', () => {
    expect(() => decodeSevctlExport(files('rome', ['pdh', 'pek', 'oca']))).toThrow(SevInvalidLengthError);
  });

  it('QEMU query-sev-capabilities (JSON text or a QMP reply) decodes and verifies with the AMD chain', () => {
    const caps = {
      pdh: readVector('sev/platform/rome/pdh.cert').toString('base64'),
      'cert-chain': files('rome', ['pek', 'oca', 'cek']).toString('base64'),
      'cpu0-id': Buffer.alloc(64, 7).toString('base64'),
      cbitpos: 47,
      'reduced-phys-bits': 1,
    };
    const decoded = decodeQemuSevCapabilities(JSON.stringify(caps));
    expect(decoded.cbitpos).toBe(47);
    expect(decoded.reducedPhysBits).toBe(1);
    expect(decoded.cpu0Id).toEqual(Buffer.alloc(64, 7));
    const { ask, ark } = realChain('rome');
    expect(verifySevChain({ ...decoded, ask, ark }).ok).toBe(true);
    const viaReply = decodeQemuSevCapabilities({ return: { ...caps, 'cpu0-id': undefined } });
    expect(viaReply.cpu0Id).toBeUndefined();
    expect(viaReply.pdh).toEqual(decoded.pdh);
  });

  it('QEMU capabilities with bad JSON, bad base64 or a missing field are INVALID_PARAM', () => {
    expect(() => decodeQemuSevCapabilities('{')).toThrow(SevInvalidParamError);
    expect(() => decodeQemuSevCapabilities({ pdh: '!!!', 'cert-chain': '' })).toThrow(SevInvalidParamError);
    expect(() =>
      decodeQemuSevCapabilities({ pdh: readVector('sev/platform/rome/pdh.cert').toString('base64') }),
    ).toThrow(SevInvalidParamError);
  });
});
