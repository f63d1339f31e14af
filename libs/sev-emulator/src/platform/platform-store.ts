import { createPrivateKey, type KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import {
  type AmdSigningKeyCertificate,
  decodeAmdCertificate,
  decodeSevCertificate,
  encodeAmdCertificate,
  encodeSevCertificate,
  type SevCertificate,
  type SevCertificateChain,
  type SnpGeneration,
  snpGenerationOf,
  sevPublicKeyFromKeyObject,
  sevPublicKeysEqual,
  type TcbVersion,
  tcbLayoutOf,
  verifySevChain,
  verifySnpCertChain,
} from '@ccm/sev';
import { SevStateStoreError } from '../errors.js';
import type { LabAuthority } from '../lab/lab-authority.js';
import { field, type StateFiles } from '../store/state-files.js';
import { CHIP_SECRET_SIZE, deriveCek, deriveChipId, deriveContextKey, deriveVcek } from './chip.js';
import { generateSelfOwnedIdentity, loadIdentity, type PlatformIdentity, saveIdentity } from './identity.js';
import { trustAnchorsOf } from '../lab/trust.js';

/** Format tag of `platform.json`. */
const PLATFORM_FORMAT = 'ccm-sev-platform/1';

/** Fixed facts about an emulated platform, chosen when it is created. */
export interface PlatformConfig {
  readonly generation: SnpGeneration;
  /** Firmware API version and build (PLATFORM_STATUS; also the SNP firmware version in reports). */
  readonly apiMajor: number;
  readonly apiMinor: number;
  readonly build: number;
  /** The platform's TCB (SNP reports' CURRENT/COMMITTED/REPORTED_TCB, VCEK SPLs). */
  readonly tcb: TcbVersion;
  /** Highest ASID a guest may be activated with. */
  readonly maxAsid: number;
}

/** Defaults of {@link PlatformConfig}: firmware 1.55 build 21, 16 ASIDs, a plausible TCB per line. */
export function defaultPlatformConfig(generation: SnpGeneration): PlatformConfig {
  const tcb: Record<SnpGeneration, TcbVersion> = {
    milan: { layout: 'milan-genoa', bootLoader: 4, tee: 0, snp: 23, microcode: 213 },
    genoa: { layout: 'milan-genoa', bootLoader: 9, tee: 0, snp: 23, microcode: 72 },
    turin: { layout: 'turin', fmc: 1, bootLoader: 1, tee: 1, snp: 3, microcode: 73 },
  };
  return { generation, apiMajor: 1, apiMinor: 55, build: 21, tcb: tcb[generation], maxAsid: 16 };
}

/** Everything a platform keeps across restarts, loaded and cross-checked. */
export interface PlatformState {
  readonly files: StateFiles;
  readonly config: PlatformConfig;
  readonly chipId: Buffer;
  /** Seals exported guest contexts (derived from the chip secret, never stored). */
  readonly contextKey: Buffer;
  readonly cek: { readonly cert: SevCertificate; readonly key: KeyObject };
  readonly vcek: { readonly cert: X509Certificate; readonly key: KeyObject };
  readonly ark: AmdSigningKeyCertificate;
  readonly ask: AmdSigningKeyCertificate;
  readonly arkX509: X509Certificate;
  readonly askX509: X509Certificate;
  identity: PlatformIdentity;
}

function parseConfig(value: unknown): PlatformConfig {
  const o = field.object(value, 'platform.json');
  if (o.format !== PLATFORM_FORMAT) throw new TypeError(`format must be ${PLATFORM_FORMAT}`);
  // Either spelling: platforms made before the spellings were unified wrote AMD's (`Milan`).
  const generation = snpGenerationOf(field.string(o, 'generation'));
  if (!generation) throw new TypeError('unknown generation');
  const t = field.object(o.tcb, 'tcb');
  const spl = (k: string) => field.integer(t, k, 0xff);
  const common = {
    bootLoader: spl('bootLoader'),
    tee: spl('tee'),
    snp: spl('snp'),
    microcode: spl('microcode'),
  };
  const tcb: TcbVersion =
    tcbLayoutOf(generation) === 'turin'
      ? { layout: 'turin', fmc: spl('fmc'), ...common }
      : { layout: 'milan-genoa', ...common };
  const byte = (k: string) => field.integer(o, k, 0xff);
  return {
    generation,
    apiMajor: byte('apiMajor'),
    apiMinor: byte('apiMinor'),
    build: byte('build'),
    tcb,
    maxAsid: field.integer(o, 'maxAsid', 0xffff),
  };
}

/** Creates a new platform in `files.dir`: chip secret, lab-endorsed CEK and VCEK, self-owned identity. */
export function createPlatformState(
  files: StateFiles,
  lab: LabAuthority,
  config: PlatformConfig,
): PlatformState {
  if (files.exists('platform.json'))
    throw new SevStateStoreError(files.path('platform.json'), 'already exists');
  if (tcbLayoutOf(config.generation) !== config.tcb.layout || lab.generation !== config.generation) {
    throw new SevStateStoreError(
      files.dir,
      `TCB layout or lab (${lab.generation}) does not fit ${config.generation}`,
    );
  }
  const secret = randomBytes(CHIP_SECRET_SIZE);
  const cek = deriveCek(secret);
  const cekCert = lab.issueCek(cek.publicKey, config);
  const chipId = deriveChipId(secret, config.generation);
  const vcek = deriveVcek(secret, config.tcb);
  const vcekCert = lab.issueVcek({ publicKey: vcek.publicKey, hwId: chipId, tcb: config.tcb });
  const identity = generateSelfOwnedIdentity(cek.privateKey, config);
  files.ensureDir();
  files.writeJson('chip.json', { secret: secret.toString('hex') }, { secret: true });
  files.write('cek.cert', encodeSevCertificate(cekCert));
  files.write('ark.cert', encodeAmdCertificate(lab.ark));
  files.write('ask.cert', encodeAmdCertificate(lab.ask));
  files.write('ark.pem', lab.arkX509.toString());
  files.write('ask.pem', lab.askX509.toString());
  files.write('vcek.pem', vcekCert.toString());
  saveIdentity(files, identity);
  // platform.json last: its presence marks a completely written platform.
  files.writeJson('platform.json', { format: PLATFORM_FORMAT, ...config, labId: lab.names.labId });
  return {
    files,
    config,
    chipId,
    contextKey: deriveContextKey(secret),
    cek: { cert: cekCert, key: cek.privateKey },
    vcek: { cert: vcekCert, key: vcek.privateKey },
    ark: lab.ark,
    ask: lab.ask,
    arkX509: lab.arkX509,
    askX509: lab.askX509,
    identity,
  };
}

/** The full SEV chain PDH ← PEK ← OCA/CEK ← ASK ← ARK (lab root) of a platform. */
export function certificateChain(state: PlatformState): SevCertificateChain {
  const { identity } = state;
  return {
    pdh: identity.pdh.cert,
    pek: identity.pek.cert,
    oca: identity.oca.cert,
    cek: state.cek.cert,
    ask: state.ask,
    ark: state.ark,
  };
}

/** Loads a platform and checks it end to end (derived keys match their certificates, both chains verify). */
export function openPlatformState(files: StateFiles): PlatformState {
  const config = files.readJson('platform.json', parseConfig);
  const secret = files.readJson('chip.json', (v) =>
    field.hex(field.object(v, 'chip.json'), 'secret', CHIP_SECRET_SIZE),
  );
  const read = <T>(name: string, decode: (b: Buffer) => T): T => files.readDecoded(name, decode);
  const cek = deriveCek(secret);
  const vcek = deriveVcek(secret, config.tcb);
  const state: PlatformState = {
    files,
    config,
    chipId: deriveChipId(secret, config.generation),
    contextKey: deriveContextKey(secret),
    cek: { cert: read('cek.cert', decodeSevCertificate), key: cek.privateKey },
    vcek: { cert: read('vcek.pem', (b) => new X509Certificate(b)), key: vcek.privateKey },
    ark: read('ark.cert', decodeAmdCertificate),
    ask: read('ask.cert', decodeAmdCertificate),
    arkX509: read('ark.pem', (b) => new X509Certificate(b)),
    askX509: read('ask.pem', (b) => new X509Certificate(b)),
    identity: loadIdentity(files, (pem) => createPrivateKey(pem)),
  };
  checkPlatformState(state, { cek: cek.publicKey, vcek: vcek.publicKey });
  return state;
}

function checkPlatformState(state: PlatformState, derived: { cek: KeyObject; vcek: KeyObject }): void {
  const fail = (detail: string): never => {
    throw new SevStateStoreError(state.files.dir, `inconsistent platform state: ${detail}`);
  };
  if (!sevPublicKeysEqual(state.cek.cert.publicKey, sevPublicKeyFromKeyObject(derived.cek))) {
    fail('cek.cert is not this chip’s CEK');
  }
  if (!state.vcek.cert.publicKey.equals(derived.vcek)) fail('vcek.pem is not this chip’s VCEK for its TCB');
  const trust = trustAnchorsOf({ ...state, generation: state.config.generation });
  const { identity } = state;
  const verdict = verifySevChain(certificateChain(state), { extraRoots: trust.sevExtraRoots });
  if (verdict.failure) fail(`SEV chain link ${verdict.failure.link}: ${verdict.failure.message}`);
  const snp = verifySnpCertChain(
    { ark: state.arkX509, ask: state.askX509, vek: state.vcek.cert },
    { trustedArks: trust.snpTrustedArks, ignoreValidity: true },
  );
  if (!snp.ok) fail(`SNP chain link ${snp.link}: ${snp.error.message}`);
  for (const [name, held] of [
    ['PEK', identity.pek],
    ['PDH', identity.pdh],
  ] as const) {
    if (!sevPublicKeysEqual(held.cert.publicKey, sevPublicKeyFromKeyObject(held.key)))
      fail(`${name} key mismatch`);
  }
}
