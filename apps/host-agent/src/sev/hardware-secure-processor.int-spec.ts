import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@ccm/config';
import { QmpCommandError } from '@ccm/qmp';
import { decodeQemuSevMigrationParameters, verifySevChain } from '@ccm/sev';
import { LabAuthority, SoftwareSecureProcessor } from '@ccm/sev-emulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../config.js';
import { chainOf } from './emulated-secure-processor.js';
import { HardwareSecureProcessor } from './hardware-secure-processor.js';
import { openSecureProcessor } from './open-secure-processor.js';

/**
 * The SEV-hardware path as far as this machine can run it: the platform chain comes from
 * query-sev-capabilities of a probe QEMU. The stand-in QEMU answers with what an emulated platform's
 * firmware would report (the emulator gives QEMU's exact format), so the chain it yields must be that
 * platform's and verify to its lab.
 */
const FAKE_QEMU = join(import.meta.dirname, '..', '__fixtures__', 'fake-qemu.mjs');

describe('SEV firmware through QEMU', () => {
  let dir: string;
  let lab: LabAuthority;
  let sp: SoftwareSecureProcessor;
  let amdFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccm-sev-hw-'));
    lab = await LabAuthority.create(join(dir, 'lab'), { rsaBits: 2048 });
    sp = SoftwareSecureProcessor.create(join(dir, 'platform'), { lab });
    sp.init();
    await writeFile(join(dir, 'caps.json'), JSON.stringify(sp.qemuSevCapabilities()));
    amdFile = join(dir, 'ask_ark.cert');
    await writeFile(amdFile, sp.amdCertChain());
  });
  afterAll(async () => {
    delete process.env['CCM_FAKE_QEMU_SEV_CAPS'];
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the platform chain with query-sev-capabilities and adds the ASK ‖ ARK file', async () => {
    process.env['CCM_FAKE_QEMU_SEV_CAPS'] = join(dir, 'caps.json');
    const hw = await HardwareSecureProcessor.open({ binary: FAKE_QEMU, amdCertFile: amdFile });
    expect(hw.mode).toBe('hardware');
    expect(hw.chain()).toEqual(chainOf(sp));
    expect(hw.features).toMatchObject({ cbitpos: 51, reducedPhysBits: 1 });
    expect(hw.version).toMatchObject({ apiMajor: sp.config.apiMajor, apiMinor: sp.config.apiMinor });
    const c = hw.chain();
    const chain = decodeQemuSevMigrationParameters({
      'sev-pdh': c.pdh,
      'sev-plat-cert': c.platCert,
      'sev-amd-cert': c.amdCert,
    });
    expect(verifySevChain(chain, { extraRoots: lab.trustAnchors().sevExtraRoots }).ok).toBe(true);
  });

  it('a QEMU without SEV refuses the probe with its QMP error', async () => {
    delete process.env['CCM_FAKE_QEMU_SEV_CAPS'];
    const err = await HardwareSecureProcessor.open({ binary: FAKE_QEMU, amdCertFile: amdFile }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QmpCommandError);
    expect((err as Error).message).toMatch(/SEV is not enabled in KVM/);
  });

  it('CCM_SEV=hardware without the AMD certificate file is a configuration error', async () => {
    const config = loadConfig('host-agent', configSchema, {
      CCM_KEYS_DIR: dir,
      CCM_HOST_ID: 'h',
      CCM_SEV: 'hardware',
    });
    await expect(openSecureProcessor(config)).rejects.toThrow(
      /CCM_SEV_AMD_CERT_FILE: required with SEV hardware/,
    );
  });
});
