import { generateKeyPair, type KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import {
  type AmdSigningKeyCertificate,
  createSevCertificate,
  decodeAmdCertificate,
  encodeAmdCertificate,
  SevAlgorithm,
  type SevCertificate,
  type SevGeneration,
  type SnpGeneration,
  snpGenerationOf,
  sevPublicKeyFromKeyObject,
  SevUsage,
  signSevCertificate,
  type TcbVersion,
} from '@ccm/sev';
import { SevStateStoreError } from '../errors.js';
import { field, privateKeyPem, StateFiles } from '../store/state-files.js';
import { type LabTrustAnchors, trustAnchorsOf } from './trust.js';
import { issueVcekCertificate, issueVlekCertificate } from './vcek.js';
import {
  checkLabConsistency,
  labAmdCertificate,
  labAsvkCertificate,
  labName,
  labX509Certificates,
  type LabNames,
} from './lab-certs.js';

const generateRsa = promisify(generateKeyPair);

/** Format tag of `lab.json`. */
const LAB_FORMAT = 'ccm-sev-lab/1';

/** Options of {@link LabAuthority.create}. */
export interface CreateLabOptions {
  /** Product line the lab impersonates in certificate names and TCB layout [Milan]. */
  readonly generation?: SnpGeneration;
  /** RSA size of the lab ARK and ASK: 4096 like every AMD line since Rome [4096]; 2048 for fast tests. */
  readonly rsaBits?: 2048 | 4096;
}

/**
 * A lab certificate authority standing in for AMD: an RSA ARK and ASK that it generates itself (never
 * AMD's keys), issued both in AMD's signing-key certificate format (SEV chain: ARK → ASK → CEK) and as
 * X.509 with RSASSA-PSS/SHA-384 (SNP chain: ARK → ASK → VCEK). Because the keys are not AMD's, only
 * verifiers given {@link trustAnchors} accept what it signs. Several emulated platforms of one test bed
 * share one lab, persisted in its own directory (`lab.json`, PEM keys 0600, `.cert` and `.pem` files).
 */
export class LabAuthority {
  #asvk?: Promise<{ cert: X509Certificate; key: KeyObject }>;

  private constructor(
    readonly generation: SnpGeneration,
    readonly names: LabNames,
    /** The lab ARK in AMD's signing-key certificate format (self-signed). */
    readonly ark: AmdSigningKeyCertificate,
    /** The lab ASK in AMD's signing-key certificate format (signed by the ARK). */
    readonly ask: AmdSigningKeyCertificate,
    /** The lab ARK as X.509 (self-signed, CN `ARK-<Product>`). */
    readonly arkX509: X509Certificate,
    /** The lab ASK as X.509 (CN `SEV-<Product>`, signed by the ARK). */
    readonly askX509: X509Certificate,
    private readonly askKey: KeyObject,
    private readonly arkKey: KeyObject,
  ) {}

  /** Generates a new lab in `dir` (which must not hold one yet). */
  static async create(dir: string, options: CreateLabOptions = {}): Promise<LabAuthority> {
    const files = new StateFiles(dir);
    if (files.exists('lab.json'))
      throw new SevStateStoreError(files.path('lab.json'), 'a lab already exists');
    const generation = options.generation ?? 'milan';
    const rsaBits = options.rsaBits ?? 4096;
    const [ark, ask] = await Promise.all([
      generateRsa('rsa', { modulusLength: rsaBits }),
      generateRsa('rsa', { modulusLength: rsaBits }),
    ]);
    const names: LabNames = { labId: randomBytes(8).toString('hex'), generation };
    const arkId = randomBytes(16);
    const arkCert = labAmdCertificate('ARK', ark.publicKey, arkId, arkId, ark.privateKey);
    const askCert = labAmdCertificate('ASK', ask.publicKey, randomBytes(16), arkId, ark.privateKey);
    const x509 = labX509Certificates(names, ark, ask);
    files.ensureDir();
    files.write('ark.key.pem', privateKeyPem(ark.privateKey), { secret: true });
    files.write('ask.key.pem', privateKeyPem(ask.privateKey), { secret: true });
    files.write('ark.cert', encodeAmdCertificate(arkCert));
    files.write('ask.cert', encodeAmdCertificate(askCert));
    files.write('ark.pem', x509.ark.toString());
    files.write('ask.pem', x509.ask.toString());
    files.writeJson('lab.json', { format: LAB_FORMAT, generation, rsaBits, labId: names.labId });
    return new LabAuthority(
      generation,
      names,
      arkCert,
      askCert,
      x509.ark,
      x509.ask,
      ask.privateKey,
      ark.privateKey,
    );
  }

  /** Loads a lab and checks that its keys and certificates belong together. */
  static open(dir: string): LabAuthority {
    const files = new StateFiles(dir);
    const meta = files.readJson('lab.json', (v) => {
      const o = field.object(v, 'lab.json');
      if (o.format !== LAB_FORMAT) throw new TypeError(`format must be ${LAB_FORMAT}`);
      // Either spelling: labs made before the spellings were unified wrote AMD's (`Milan`).
      const generation = snpGenerationOf(field.string(o, 'generation'));
      if (!generation) throw new TypeError('unknown generation');
      return { generation, labId: field.string(o, 'labId') };
    });
    const ark = files.readDecoded('ark.cert', decodeAmdCertificate);
    const ask = files.readDecoded('ask.cert', decodeAmdCertificate);
    const arkX509 = files.readDecoded('ark.pem', (b) => new X509Certificate(b));
    const askX509 = files.readDecoded('ask.pem', (b) => new X509Certificate(b));
    const arkKey = files.readPrivateKey('ark.key.pem');
    const askKey = files.readPrivateKey('ask.key.pem');
    checkLabConsistency(files, { ark, ask, arkX509, askX509, arkKey, askKey });
    const names: LabNames = { labId: meta.labId, generation: meta.generation };
    return new LabAuthority(meta.generation, names, ark, ask, arkX509, askX509, askKey, arkKey);
  }

  /** Opens the lab in `dir`, creating it first if the directory holds none. */
  static async openOrCreate(dir: string, options: CreateLabOptions = {}): Promise<LabAuthority> {
    if (new StateFiles(dir).exists('lab.json')) return LabAuthority.open(dir);
    return LabAuthority.create(dir, options);
  }

  /** The lab's product line in libs/sev's SEV spelling (`milan`), for `extraRoots`. */
  get sevGeneration(): SevGeneration {
    return this.generation;
  }

  /** Roots a verifier must be given to accept this lab's chains (default verification rejects them). */
  trustAnchors(): LabTrustAnchors {
    return trustAnchorsOf(this);
  }

  /**
   * Endorses a chip's CEK as AMD's KDS does: a CEK certificate (usage CEK, ECDSA-SHA256) whose SIG1 is
   * the ASK's RSA-PSS signature (SHA-384 for a 4096-bit ASK, SHA-256 for 2048).
   */
  issueCek(
    cekPublicKey: KeyObject,
    version: { readonly apiMajor: number; readonly apiMinor: number },
  ): SevCertificate {
    const cert = createSevCertificate({
      usage: SevUsage.CEK,
      algorithm: SevAlgorithm.ECDSA_SHA256,
      publicKey: sevPublicKeyFromKeyObject(cekPublicKey),
      ...version,
    });
    const algorithm = this.ask.modulusBits === 2048 ? SevAlgorithm.RSA_SHA256 : SevAlgorithm.RSA_SHA384;
    return signSevCertificate(cert, 0, { usage: SevUsage.ASK, algorithm, privateKey: this.askKey });
  }

  /** Issues a VCEK certificate for a chip id and TCB, as AMD's KDS does (see `issueVcekCertificate`). */
  issueVcek(input: {
    readonly publicKey: KeyObject;
    readonly hwId: Uint8Array;
    readonly tcb: TcbVersion;
  }): X509Certificate {
    return issueVcekCertificate({ ...input, names: this.names, issuerKey: this.askKey });
  }

  /**
   * Endorses a cloud provider's VLEK as AMD does (the provider then loads the key into its platforms,
   * which sign their reports with it): the lab's ASVK (`SEV-VLEK-<Product>`, signed by the ARK; made
   * at the first call and kept by this object, not in the lab's directory) and the VLEK certificate for
   * `publicKey`, `tcb` and `cspId` signed by it. A verifier trusting this lab's ARK accepts the chain
   * ARK → ASVK → VLEK.
   */
  async issueVlek(input: {
    readonly publicKey: KeyObject;
    readonly tcb: TcbVersion;
    readonly cspId: string;
  }): Promise<{ asvk: X509Certificate; vlek: X509Certificate }> {
    this.#asvk ??= generateRsa('rsa', { modulusLength: this.ask.modulusBits }).then((k) => ({
      cert: labAsvkCertificate(this.names, k, this.arkKey),
      key: k.privateKey,
    }));
    const asvk = await this.#asvk;
    const vlek = issueVlekCertificate({
      ...input,
      names: this.names,
      issuer: labName(this.names, 'ASVK'),
      issuerKey: asvk.key,
    });
    return { asvk: asvk.cert, vlek };
  }
}
