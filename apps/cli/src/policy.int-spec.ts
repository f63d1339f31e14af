import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OwnerPolicySchema, type OwnerPolicyInput } from '@ccm/contracts';
import { decodeSevPlatformCertChain, encodeSevCertificate } from '@ccm/sev';
import { LabAuthority, SoftwareSecureProcessor } from '@ccm/sev-emulator';
import { startServiceProcess, startTestStack, type ServiceProcess, type TestStack } from '@ccm/testing';
import { runCli } from './cli.js';
import { ExitCode } from './errors.js';
import { capture } from './testing/capture.js';

const doc = (over: Partial<OwnerPolicyInput> = {}): OwnerPolicyInput =>
  OwnerPolicySchema.parse({
    workloadClass: 'cli-web',
    environment: 'production',
    workloads: ['cli-1'],
    trustedRoots: { amd: ['milan'], lab: [] },
    sev: { minFirmware: { apiMajor: 0, apiMinor: 14 }, guestPolicy: 0x1, launchDigests: [] },
    migration: { allowed: true, targetHosts: ['host-b'] },
    ...over,
  });

/**
 * `ccm policy list|show|put` and `ccm guest revoke` against a real key-broker (the built service, on
 * real NATS and Postgres): they speak with the guest-owner key, and bad command lines fail before
 * anything connects.
 */
describe('ccm policy and ccm guest (guest owner)', () => {
  let stack: TestStack;
  let broker: ServiceProcess;
  let work: string;
  let flags: string[];

  const ccm = async (...argv: string[]) => {
    const c = capture();
    const code = await runCli([...argv, ...flags], c.io);
    return { code, out: c.text(), err: c.err.join('') };
  };
  const file = async (name: string, content: unknown) => {
    const path = join(work, name);
    await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };

  beforeAll(async () => {
    stack = await startTestStack();
    broker = await startServiceProcess('key-broker', stack.env({ CCM_INSTANCE_ID: 'kb-cli' }));
    work = await mkdtemp(join(tmpdir(), 'ccm-cli-policy-'));
    flags = ['--nats-url', stack.nats.url, '--keys-dir', stack.keysDir];
  }, 120_000);
  afterAll(async () => {
    await broker?.stop();
    await stack?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('puts, lists and shows a policy as the guest owner', async () => {
    const empty = await ccm('policy', 'list');
    expect(empty).toMatchObject({ code: ExitCode.Ok, out: 'no policies\n' });
    const put = await ccm('policy', 'put', await file('p1.json', doc()));
    expect(put.err).toBe('');
    expect(put.out).toMatch(/^cli-web is now at version 1 \([0-9a-f]{64}\)\n$/);
    const again = await ccm(
      'policy',
      'put',
      await file('p2.json', doc({ workloads: ['cli-1', 'cli-2'] })),
      '--json',
    );
    expect(JSON.parse(again.out)).toMatchObject({
      workloadClass: 'cli-web',
      version: 2,
      changedBy: 'guest-owner',
    });
    const list = await ccm('policy', 'list');
    expect(list.out).toMatch(/^CLASS\s+VERSION\s+WORKLOADS/);
    expect(list.out).toMatch(/cli-web\s+2\s+cli-1,cli-2\s+guest-owner/);
    const v1 = await ccm('policy', 'show', 'cli-web', '--version', '1', '--json');
    expect(JSON.parse(v1.out)).toMatchObject({ version: 1, policy: { workloads: ['cli-1'] } });
    const latest = await ccm('policy', 'show', 'cli-web');
    expect(latest.out).toMatch(/^cli-web v2 /);
    // A stale --expected-version is refused by the broker (someone changed it since).
    const stale = await ccm(
      'policy',
      'put',
      await file('p3.json', doc()),
      '--expected-version',
      '1',
      '--json',
    );
    expect(stale.code).toBe(ExitCode.Refused);
    expect(JSON.parse(stale.err).error.code).toBe('CONFLICT');
    const missing = await ccm('policy', 'show', 'nope', '--json');
    expect(missing.code).toBe(ExitCode.Refused);
    expect(JSON.parse(missing.err).error.code).toBe('POLICY_NOT_FOUND');
  });

  it('revokes a guest', async () => {
    const r = await ccm('guest', 'revoke', 'vm-gone', '--reason', 'decommissioned', '--json');
    expect(r.code).toBe(ExitCode.Ok);
    expect(JSON.parse(r.out)).toMatchObject({ vmId: 'vm-gone', keysDropped: [] });
  });

  it('caches a VCEK (DER or PEM) and a CEK, and lists them', async () => {
    const lab = await LabAuthority.create(join(work, 'lab'), { rsaBits: 2048 });
    const sp = SoftwareSecureProcessor.create(join(work, 'sp'), { lab });
    sp.snpInit();
    sp.init();
    const vek = sp.snpCertChain().vek;
    const der = await file('vcek.der', '');
    await writeFile(der, vek.raw);
    const vcek = await ccm('cert', 'put', der, '--kind', 'vcek', '--json');
    expect(vcek.err).toBe('');
    expect(JSON.parse(vcek.out)).toMatchObject({ kind: 'vcek', productLine: 'milan' });
    expect(JSON.parse(vcek.out).kdsUrl).toMatch(/^https:\/\/kdsintf\.amd\.com\/vcek\/v1\/Milan\//);
    const pem = await file('vcek.pem', vek.toString());
    expect((await ccm('cert', 'put', pem, '--kind', 'vcek')).out).toMatch(/^vcek cached under https:/);
    const { cek } = decodeSevPlatformCertChain(sp.pdhCertExport().certChain);
    const cekFile = await file('cek.cert', '');
    await writeFile(cekFile, encodeSevCertificate(cek));
    const chipId = sp.getId().toString('hex');
    const c = await ccm('cert', 'put', cekFile, '--kind', 'cek', '--chip-id', chipId);
    expect(c.out).toBe(`cek cached under https://kdsintf.amd.com/cek/id/${chipId}\n`);
    const list = await ccm('cert', 'list');
    expect(list.out.split('\n').filter(Boolean)).toHaveLength(3); // header, cek, vcek (one URL)
    const onlyCek = await ccm('cert', 'list', '--kind', 'cek', '--json');
    expect(JSON.parse(onlyCek.out).certificates).toHaveLength(1);
    // The broker refuses a certificate that is not what --kind says.
    const wrong = await ccm('cert', 'put', cekFile, '--kind', 'vcek', '--json');
    expect(wrong.code).toBe(ExitCode.Refused);
    expect(JSON.parse(wrong.err).error.code).toBe('CERTIFICATE_REJECTED');
  }, 60_000);

  it('a keys dir without the guest-owner key is refused with a hint naming it', async () => {
    const keys = join(work, 'operator-only');
    await rm(keys, { recursive: true, force: true });
    // The operator's keys dir of a deployment where the owner keeps its key elsewhere.
    await cp(stack.keysDir, keys, { recursive: true });
    for (const f of await readdir(keys))
      if (f.startsWith('guest-owner')) await rm(join(keys, f), { recursive: true, force: true });
    const c = capture();
    const code = await runCli(['policy', 'list', '--nats-url', stack.nats.url, '--keys-dir', keys], c.io);
    expect(code).not.toBe(ExitCode.Ok);
    expect(c.err.join('')).toContain('guest-owner');
  });

  it.each([
    [['policy'], 'ccm policy takes list, show, put'],
    [['policy', 'delete'], 'ccm policy takes list, show, put'],
    [['policy', 'show'], 'needs a workload class'],
    [['policy', 'show', 'cli-web', '--version', 'latest'], '--version must be a whole number'],
    [['policy', 'show', 'cli-web', '--version', '0'], '--version must be a whole number'],
    [['policy', 'put'], 'needs a policy file'],
    [['policy', 'put', 'x.json', '--expected-version', '-1'], '--expected-version'],
    [['policy', 'list', '--bogus'], "Unknown option '--bogus'"],
    [['guest'], 'ccm guest takes revoke'],
    [['guest', 'revoke'], 'needs the VM id'],
    [['guest', 'revoke', 'vm-1'], '--reason'],
    [['cert'], 'ccm cert takes list, put'],
    [['cert', 'put'], 'needs a certificate file'],
    [['cert', 'put', 'x.der'], 'needs --kind'],
    [['cert', 'put', 'x.der', '--kind', 'pem'], '--kind must be vcek, vlek or cek'],
    [['cert', 'put', 'x.cert', '--kind', 'cek'], '--chip-id'],
    [['cert', 'put', 'x.cert', '--kind', 'cek', '--chip-id', 'abcd'], '--chip-id'],
    [['cert', 'list', '--kind', 'ask'], '--kind must be vcek, vlek or cek'],
  ])('rejects %j with exit 2', async (argv, text) => {
    const r = await ccm(...argv, '--json');
    expect(r.code).toBe(ExitCode.Usage);
    const body = JSON.parse(r.err) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('USAGE');
    expect(body.error.message).toContain(text);
  });

  it.each([
    ['a missing file', () => join(work, 'absent.json'), 'cannot read'],
    ['text that is not JSON', () => file('bad.json', '{"workloadClass": '), 'is not JSON'],
    [
      'JSON that is not a policy',
      () => file('notpolicy.json', { workloadClass: 'x' }),
      'is not an owner policy',
    ],
  ])('policy put refuses %s with exit 2 before sending', async (_name, path, text) => {
    const r = await ccm('policy', 'put', await path(), '--json');
    expect(r.code).toBe(ExitCode.Usage);
    const body = JSON.parse(r.err) as { error: { code: string; message: string } };
    expect(body.error).toMatchObject({ code: 'BAD_FILE' });
    expect(body.error.message).toContain(text);
  });
});
