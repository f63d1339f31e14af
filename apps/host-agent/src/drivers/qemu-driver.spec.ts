import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guestRamArgs, qemuSevArgs } from './qemu-driver.js';
import { vmPaths } from './vm-process.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ccm-sev-args-,'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** SEV hardware cannot be exercised here: its QEMU arguments are checked as generated. */
describe('QEMU arguments of an SEV launch on SEV hardware', () => {
  it('makes a sev-guest object with the policy, the C-bit, measured direct boot and the owner files', async () => {
    const args = await qemuSevArgs(
      vmPaths(dir),
      { policy: 0x5, godh: 'R09ESA==', session: 'U0VTU0lPTg==' },
      { cbitpos: 51, reducedPhysBits: 1 },
    );
    expect(args).toEqual([
      '-object',
      `sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,dh-cert-file=${join(dir, 'godh.b64')},session-file=${join(dir, 'session.b64')}`,
      '-machine',
      'memory-encryption=sev0',
    ]);
    expect(await readFile(join(dir, 'godh.b64'), 'utf8')).toBe('R09ESA==');
    expect(await readFile(join(dir, 'session.b64'), 'utf8')).toBe('U0VTU0lPTg==');
  });

  it('a migration destination has the policy but no owner files', async () => {
    const args = await qemuSevArgs(vmPaths(dir), { policy: 0x1 }, { cbitpos: 47, reducedPhysBits: 5 });
    expect(args[1]).toBe('sev-guest,id=sev0,policy=0x1,cbitpos=47,reduced-phys-bits=5,kernel-hashes=on');
  });
});

describe('guest RAM backed by a file (an emulated SEV launch)', () => {
  it('makes the file 0600 and sized, and backs the default RAM id with it, shared', async () => {
    const paths = vmPaths(dir);
    const args = await guestRamArgs(paths, 32);
    expect(args).toEqual([
      '-object',
      `memory-backend-file,id=pc.ram,mem-path=${paths.guestRam.replace(/,/g, ',,')},share=on,size=32M`,
      '-machine',
      'memory-backend=pc.ram',
    ]);
    const st = await stat(paths.guestRam);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(32 * 1024 * 1024);
  });
});
