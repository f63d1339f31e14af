import { type INestApplication } from '@nestjs/common';
import { OPERATOR } from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type TrustStore } from '@ccm/keys';
import { createServiceApp } from '@ccm/runtime';
import { startTestStack, type TestStack } from '@ccm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './cli.js';
import { Follower } from './commands/follow.js';
import { CliError, ExitCode } from './errors.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) }, out, err };
}

describe('ccm CLI against a real stack', () => {
  let stack: TestStack;
  let app: INestApplication;
  let flags: string[];
  let trust: TrustStore;

  beforeAll(async () => {
    stack = await startTestStack();
    ({ app } = await createServiceApp({ service: 'key-broker', database: true }, stack.env()));
    await app.init();
    flags = ['--nats-url', stack.nats.url, '--keys-dir', stack.keysDir];
    trust = await loadTrustStore(stack.keysDir);
  });
  afterAll(async () => {
    await app?.close();
    await stack?.stop();
  });

  it('pings a service and prints its instance', async () => {
    const c = capture();
    expect(await runCli(['ping', 'key-broker', ...flags], c.io)).toBe(ExitCode.Ok);
    expect(c.out.join('')).toMatch(/^key-broker \(.+\) answered in [\d.]+ ms; ping #1\n$/);
  });

  it('prints JSON with --json', async () => {
    const c = capture();
    expect(await runCli(['ping', 'key-broker', '--json', '--message', 'hi', ...flags], c.io)).toBe(
      ExitCode.Ok,
    );
    expect(JSON.parse(c.out.join(''))).toMatchObject({ service: 'key-broker', echo: 'hi', count: 2 });
  });

  it.each([
    [['ping', 'nope'], 'USAGE', 'a service name'],
    [['ping', 'host-agent'], 'USAGE', '--host'],
    [['ping', 'key-broker', '--timeout-ms', 'soon'], 'USAGE', '--timeout-ms'],
    [['ping', 'key-broker', '--bogus'], 'USAGE', "Unknown option '--bogus'"],
    [['frobnicate'], 'USAGE', 'unknown command'],
    [['vm'], 'USAGE', 'ccm vm takes launch'],
    [['vm', 'start', '--host', 'h', '--workload', 'w'], 'USAGE', 'ccm vm takes launch'],
    [['vm', 'launch', '--workload', 'w'], 'USAGE', '--host'],
    [['vm', 'launch', '--host', 'h'], 'USAGE', '--workload'],
    [['vm', 'launch', '--host', 'h', '--workload', 'a b'], 'USAGE', '--workload: must be letters'],
    [['vm', 'launch', '--host', 'h', '--workload', 'w', '--vm', 'x.y'], 'USAGE', '--vm: must be letters'],
    [['vm', 'launch', '--host', 'h/1', '--workload', 'w'], 'USAGE', '--host: must be letters'],
    [['vm', 'launch', '--host', 'h', '--workload', 'w', '--overlay', ''], 'USAGE', '--overlay'],
    [['vm', 'launch', 'extra', '--host', 'h', '--workload', 'w'], 'USAGE', 'no positional'],
    [['vm', 'launch', '--host', 'h', '--workload', 'w', '--overlay'], 'USAGE', "'--overlay"],
  ])('rejects %j with exit 2 and a hint', async (argv, code, text) => {
    const c = capture();
    expect(await runCli([...argv, ...flags, '--json'], c.io)).toBe(ExitCode.Usage);
    const body = JSON.parse(c.err.join('')) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).toContain(text);
  });

  it('says UNAVAILABLE with exit 3 when nobody serves the subject', async () => {
    const c = capture();
    expect(await runCli(['ping', 'vm-lifecycle', '--timeout-ms', '500', ...flags], c.io)).toBe(
      ExitCode.Unavailable,
    );
    expect(c.err.join('')).toContain('[UNAVAILABLE]');
    expect(c.err.join('')).toContain('hint:');
  });

  it('rejects a NATS URL that is not nats://', async () => {
    const c = capture();
    expect(
      await runCli(['ping', 'key-broker', '--nats-url', 'http://x', '--keys-dir', stack.keysDir], c.io),
    ).toBe(ExitCode.Usage);
    expect(c.err.join('')).toContain('[BAD_FLAG]');
  });

  it('a follower that cannot read the events stream fails with EVENTS_UNAVAILABLE, exit 3', async () => {
    const nc = await stack.connectAs(OPERATOR);
    await nc.close();
    const conn = {
      nc,
      identity: await loadIdentity(stack.keysDir, OPERATOR),
      trust,
      close: () => nc.close(),
    };
    const err = await new Follower(conn, 'mig-1').run(() => undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect(err).toMatchObject({ code: 'EVENTS_UNAVAILABLE', exitCode: ExitCode.Unavailable });
    expect((err as Error).message).toMatch(/^cannot read the events of mig-1 from CCM_EVENTS: .*closed/);
  });
});
