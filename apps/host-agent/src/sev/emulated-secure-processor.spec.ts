import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSevCertificate, startSevLaunch } from '@ccm/sev';
import { LabAuthority } from '@ccm/sev-emulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatedSecureProcessor, openEmulator } from './emulated-secure-processor.js';

/** The agent's emulated launches keep their context beside the VM and get it back after a restart. */
describe('EmulatedSecureProcessor: contexts across agent restarts', () => {
  let work: string;
  const open = async () =>
    new EmulatedSecureProcessor(await openEmulator(join(work, 'sev-emulator'), join(work, 'lab')));
  const launch = (sp: EmulatedSecureProcessor, contextFile: string) => {
    const owner = startSevLaunch({ pdh: decodeSevCertificate(sp.sp.pdhCertExport().pdh), policy: 1 });
    const q = owner.qemuInputs();
    return sp.launch({
      vmId: 'vm',
      policy: 1,
      godh: Buffer.from(q.dhCertBase64, 'base64'),
      session: Buffer.from(q.sessionBase64, 'base64'),
      regions: [Buffer.alloc(100, 7)],
      contextFile,
    });
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ccm-esp-'));
    await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
  });
  afterAll(() => rm(work, { recursive: true, force: true }));

  it('keeps nothing before LAUNCH_MEASURE, the measured context after it; a restarted agent gets it back', async () => {
    const file = join(work, 'vm1', 'sev-context.bin');
    const first = launch(await open(), file);
    expect(existsSync(file)).toBe(false);
    first.measure();
    first.finish();
    const restored = (await open()).restore({ vmId: 'vm', contextFile: file });
    if (!('launch' in restored)) throw new Error(`not restored: ${restored.lost.detail}`);
    expect(restored.launch.state).toBe('RUNNING');
    restored.launch.close();
    expect(existsSync(file)).toBe(false);
  });

  it('no context file: the loss says context-missing; an unreadable one is refused, never thrown', async () => {
    const sp = await open();
    expect(sp.restore({ vmId: 'vm', contextFile: join(work, 'none', 'sev-context.bin') })).toMatchObject({
      lost: { reason: 'context-missing' },
    });
    expect(sp.restore({ vmId: 'vm', contextFile: work })).toMatchObject({
      lost: { reason: 'context-refused', status: 'HWERROR_PLATFORM' },
    });
  });
});
