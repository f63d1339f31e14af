import { snpProductName, type SnpGeneration } from './generation.js';

/**
 * SHA-256 (lowercase hex) of the DER of AMD's X.509 SNP certificate authorities, per product line
 * (spec 9.5, shared/vectors/README "Reference facts"). The ARK fingerprint is the trust anchor: a chain
 * is only as good as the pin on its root.
 */
export const AMD_SNP_CA_SHA256: Readonly<Record<SnpGeneration, { ark: string; ask: string; asvk: string }>> =
  {
    milan: {
      ark: '69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd',
      ask: '67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b',
      asvk: 'c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5',
    },
    genoa: {
      ark: '4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1',
      ask: '5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521',
      asvk: '197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372',
    },
    turin: {
      ark: '1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a',
      ask: '5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185',
      asvk: '104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c',
    },
  };

/** Trusted roots: ARK DER SHA-256 (lowercase hex) to the product line it certifies. */
export type SnpTrustedArks = ReadonlyMap<string, SnpGeneration>;

/** AMD's production ARKs, the default trust anchors of chain verification. */
export const AMD_TRUSTED_ARKS: SnpTrustedArks = new Map(
  (Object.entries(AMD_SNP_CA_SHA256) as Array<[SnpGeneration, { ark: string }]>).map(([g, f]) => [f.ark, g]),
);

/** Subject CN conventions of the SNP CAs (spec 9.4/9.5). */
export const SNP_CA_COMMON_NAME = {
  ark: (g: SnpGeneration): string => `ARK-${snpProductName(g)}`,
  ask: (g: SnpGeneration): string => `SEV-${snpProductName(g)}`,
  asvk: (g: SnpGeneration): string => `SEV-VLEK-${snpProductName(g)}`,
} as const;

/** Salt length AMD uses in every RSASSA-PSS signature of the SNP chain (= the SHA-384 output size). */
export const SNP_CA_PSS_SALT_LENGTH = 48;
