import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  type OwnerPolicyInput,
  OwnerPolicySchema,
  type OwnerPolicy,
  type PlatformReply,
} from '@ccm/contracts';
import { LabAuthority, SoftwareSecureProcessor } from '@ccm/sev-emulator';

/** shared/vectors: the nearest ancestor holding one. */
function vectorsDir(): string {
  for (let dir = import.meta.dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, 'shared', 'vectors'))) return join(dir, 'shared', 'vectors');
  }
  throw new Error('no shared/vectors above this checkout');
}
export const vector = (path: string): Buffer => readFileSync(join(vectorsDir(), path));

const capabilities: PlatformReply['capabilities'] = {
  driver: 'sim',
  accelerator: 'sim',
  acceleratorReason: 'test',
  sevMode: 'hardware',
  sev: true,
  sevEs: true,
  sevSnp: false,
  memoryMiB: 1024,
  cpus: 2,
};

/** A host's `platform` reply carrying a real AMD chain from shared/vectors (Naples or Rome). */
export function realPlatform(hostId: string, generation: 'naples' | 'rome'): PlatformReply {
  const p = (f: string) => vector(`sev/platform/${generation}/${f}.cert`);
  const a = (f: string) => vector(`sev/amd-ca/${generation}/${f}.cert`);
  return {
    hostId,
    capabilities,
    sev: {
      mode: 'hardware',
      version: { apiMajor: 0, apiMinor: 22, build: 0 },
      chain: {
        pdh: p('pdh').toString('base64'),
        platCert: Buffer.concat([p('pek'), p('oca'), p('cek')]).toString('base64'),
        amdCert: Buffer.concat([a('ask'), a('ark')]).toString('base64'),
      },
    },
  };
}

export { labPin } from '@ccm/sev-emulator';

/** A lab and one software secure processor it endorses, in a temp dir. */
export async function emulatedPlatform(hostId: string): Promise<{
  lab: LabAuthority;
  reply: PlatformReply;
  cleanup(): void;
}> {
  const root = mkdtempSync(join(tmpdir(), 'ccm-kb-lab-'));
  const lab = await LabAuthority.create(join(root, 'lab'), { rsaBits: 2048 });
  const sp = SoftwareSecureProcessor.create(join(root, 'sp'), { lab });
  sp.init();
  const exp = sp.pdhCertExport();
  const { apiMajor, apiMinor, build } = sp.config;
  return {
    lab,
    reply: {
      hostId,
      capabilities: { ...capabilities, sevMode: 'emulated' },
      sev: {
        mode: 'emulated',
        version: { apiMajor, apiMinor, build },
        chain: {
          pdh: exp.pdh.toString('base64'),
          platCert: exp.certChain.toString('base64'),
          amdCert: sp.amdCertChain().toString('base64'),
        },
      },
    },
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** An owner policy with sensible defaults; `over` replaces top-level fields. */
export function policy(over: Partial<OwnerPolicyInput> = {}): OwnerPolicy {
  return OwnerPolicySchema.parse({
    workloadClass: 'web',
    environment: 'production',
    workloads: ['web-1'],
    trustedRoots: { amd: ['naples', 'rome', 'milan', 'genoa', 'turin'], lab: [] },
    sev: { minFirmware: { apiMajor: 0, apiMinor: 14 }, guestPolicy: 0x1, launchDigests: [] },
    migration: { allowed: true, targetHosts: ['host-b'] },
    ...over,
  });
}
