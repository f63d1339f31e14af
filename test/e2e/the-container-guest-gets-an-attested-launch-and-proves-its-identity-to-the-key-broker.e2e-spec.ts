import { randomUUID } from 'node:crypto';
import { copyFile, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  AdmitGuestReplySchema,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  LAUNCH_SECRET_GUIDS,
  LAUNCH_SECRET_PAGE,
  LaunchSecretReplySchema,
  LaunchSessionReplySchema,
  PutPolicyReplySchema,
  type SignerName,
  type VmSpecInput,
} from '@ccm/contracts';
import { loadIdentity, loadTrustStore, type Identity } from '@ccm/keys';
import { signedRequest } from '@ccm/messaging';
import { parseSevSecretTable } from '@ccm/sev';
import { LabAuthority } from '@ccm/sev-emulator';
import {
  guestClient,
  pollUntil,
  startServiceProcess,
  type GuestClient,
  type ServiceProcess,
} from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type z } from 'zod';
import { GUEST_RAM_FILE } from '@ccm/qmp';
import { simContainerPolicy } from '../../tools/demo/container-migration.js';
import { containerBuildUnavailable, ensureContainerImage } from '../../tools/guest-image/container-image.js';
import { containerGuestOnBridge } from './support/container-guest.js';
import { qemuHostsUnavailable, startHostNamespaces, type HostNamespaces } from './support/host-namespaces.js';

/**
 * Issue 12 item 1 / issue 14 item 1: the container guest launched as vm-lifecycle launches it, on a
 * host-agent whose qemu driver runs the launch on the software secure processor. The key-broker's
 * launch session, the launch (QEMU paused, measured), the measurement judged by the key-broker, which
 * seals the VM's identity secret, `inject-secret` (the agent writes the decrypted page into the guest's
 * RAM at LAUNCH_SECRET_PAGE), `resume`; the guest init copies the page out of /dev/mem and starts the
 * guest-agent with CCM_GUEST_SEV=sev, which answers `identity` as that VM, and its fresh evidence (a MAC
 * under the identity secret) is accepted by the key-broker's `admit-guest`. The key-broker holds the
 * guest-agent's service identity (CCM_GUEST_AGENT_KEYS_DIR) and seals its NATS seed and signing key into
 * the same launch secret: the app disk carries the trust store only, and no file the host can read holds
 * either. A launch whose measurement the owner does not accept gets no secret; another launch's secret
 * is refused by the secure processor.
 */
const skip = qemuHostsUnavailable() ?? containerBuildUnavailable();
if (skip) console.warn(`[container guest attested launch] skipped: ${skip}`);

const HOST = 'cs';
const VM = 'cvm-sev1';
const WORKLOAD = 'web-sev';
const BRIDGE = 'ccmgbs';

/** The guest-agent's private files in a keys dir (ccm-keys names). */
const GUEST_AGENT_PRIVATE = ['guest-agent.nk', 'guest-agent.sign.pem'];

/** A secret as an attacker would search for it: raw, hex, base64 and base64url. */
const forms = (name: string, secret: Buffer): Array<[string, Buffer]> =>
  [
    secret,
    Buffer.from(secret.toString('hex')),
    Buffer.from(secret.toString('base64')),
    Buffer.from(secret.toString('base64url')),
  ].map((b) => [name, b]);

/** Every form of the guest-agent's NATS seed and signing key (PKCS#8 DER, as in its PEM, and its raw 32 bytes). */
function guestAgentNeedles(id: Identity): Array<[string, Buffer]> {
  const jwk = id.signingKey.export({ format: 'jwk' });
  return [
    ...forms('nats seed', Buffer.from(id.natsSeed)),
    ...forms('signing key (pkcs8)', id.signingKey.export({ format: 'der', type: 'pkcs8' })),
    ...forms('signing key (raw)', Buffer.from(jwk.d!, 'base64url')),
  ];
}

/** Every regular file under `dir` (recursively). */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe.skipIf(skip !== undefined)('the container guest launched with an attested launch', () => {
  let ns: HostNamespaces;
  let keyBroker: ServiceProcess | undefined;
  let spec: VmSpecInput;
  let guests: GuestClient;
  let send: <S extends z.ZodType>(
    signer: SignerName,
    subject: string,
    data: unknown,
    reply: S,
  ) => Promise<z.infer<S>>;
  let runDir = '';
  let ownerKeys = '';
  let guestAgentIdentity: Identity;
  const conns = new Map<SignerName, NatsConnection>();

  beforeAll(async () => {
    const image = await ensureContainerImage();
    ns = await startHostNamespaces(
      [HOST],
      {
        CCM_HYPERVISOR: 'qemu',
        CCM_QEMU_ACCEL: 'tcg',
        CCM_SEV: 'emulated',
        CCM_VM_START_TIMEOUT_MS: '60000',
      },
      { guestBridge: BRIDGE },
    );
    const work = dirname(ns.hosts[HOST].runDir);
    const labDir = join(work, 'lab');
    const lab = await LabAuthority.create(labDir, { rsaBits: 2048 });
    ns.hosts[HOST].env['CCM_SEV_LAB_DIR'] = labDir;
    spec = await containerGuestOnBridge(ns, image, {
      vmId: VM,
      bridge: BRIDGE,
      mac: '52:54:00:cc:20:01',
      guest: 0,
      work,
      publicKeysOnly: true,
    });
    // The guest owner's copy of the guest-agent's identity, outside every host's files (in the lab the
    // stack's keys dir holds every identity; in production the operator's would not hold this one).
    ownerKeys = await mkdtemp(join(tmpdir(), 'ccm-guest-owner-'));
    for (const f of GUEST_AGENT_PRIVATE) await copyFile(join(ns.stack.keysDir, f), join(ownerKeys, f));
    guestAgentIdentity = await loadIdentity(ownerKeys, 'guest-agent');
    keyBroker = await startServiceProcess(
      'key-broker',
      ns.stack.env({
        CCM_INSTANCE_ID: 'key-broker-e2e',
        CCM_LOG_LEVEL: 'log',
        CCM_GUEST_AGENT_KEYS_DIR: ownerKeys,
      }),
      { logFile: join(work, 'key-broker.log') },
    );
    await ns.startAgent(HOST);
    const trust = await loadTrustStore(ns.stack.keysDir);
    send = async (signer, subject, data, reply) => {
      let nc = conns.get(signer);
      if (!nc) conns.set(signer, (nc = await ns.stack.connectAs(signer)));
      return signedRequest(nc, await loadIdentity(ns.stack.keysDir, signer), trust, subject, data, reply, {
        idempotencyKey: randomUUID(),
        timeoutMs: 60_000,
      });
    };
    // The guest owner accepts exactly this image, command line and firmware (and the lab's chip).
    const policy = await simContainerPolicy({ lab, labDir, spec: { cpus: 1, ...spec } }, [WORKLOAD], [HOST]);
    await send(
      'guest-owner',
      keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
      { policy, expectedVersion: 0 },
      PutPolicyReplySchema,
    );
    guests = await guestClient(ns.nc, ns.stack.keysDir);
  }, 900_000);

  afterAll(async () => {
    await Promise.allSettled([...conns.values()].map((c) => c.close()));
    await ns?.close();
    await keyBroker?.stop();
    if (ownerKeys) await rm(ownerKeys, { recursive: true, force: true });
  });

  /** vm-lifecycle's first half of an attested launch: session, launch (paused, measured), verdict. */
  const launchAndJudge = async (vmId: string, s: VmSpecInput) => {
    const session = await send(
      'vm-lifecycle',
      keyBrokerSubject(KEY_BROKER_VERBS.launchSession),
      { vmId, hostId: HOST, workloadId: WORKLOAD },
      LaunchSessionReplySchema,
    );
    const launched = await ns.client.send(HOST, 'launch', {
      vmId,
      spec: s,
      sev: { policy: session.policy, godh: session.godh, session: session.session },
    });
    expect(launched.vm.phase).toBe('Paused');
    const verdict = send(
      'vm-lifecycle',
      keyBrokerSubject(KEY_BROKER_VERBS.launchSecret),
      { launchSessionId: session.launchSessionId, measurement: launched.measurement },
      LaunchSecretReplySchema,
    );
    return { launched, verdict };
  };

  it('boots with its identity secret and guest-agent keys in its own memory; the key-broker admits its fresh evidence', async () => {
    const t0 = Date.now();
    const { launched, verdict } = await launchAndJudge(VM, spec);
    runDir = launched.vm.runDir;
    const packet = await verdict;
    await ns.client.send(HOST, 'inject-secret', {
      vmId: VM,
      packetHeader: packet.packetHeader,
      secret: packet.secret,
    });
    const ram = join(runDir, GUEST_RAM_FILE);
    expect((await stat(ram)).mode & 0o777).toBe(0o600);
    expect((await ns.client.send(HOST, 'resume', { vmId: VM })).vm.phase).toBe('Running');
    const serial = (): Promise<string> => readFile(join(runDir, 'serial.log'), 'utf8').catch(() => '');
    const who = await pollUntil(
      'the guest-agent in the guest to answer identity',
      () => guests.send(VM, 'identity', {}, { timeoutMs: 2_000 }).catch(() => undefined),
      Boolean,
      { timeoutMs: 240_000, intervalMs: 1_000 },
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}; serial console:\n${(await serial()).slice(-3000)}`);
    });
    console.log(`[container guest attested launch] identity answered ${Date.now() - t0} ms after launch`);
    expect(who).toMatchObject({ vmId: VM });
    expect(await serial()).toMatch(`ccm-init: secret table at 0x${LAUNCH_SECRET_PAGE.gpa.toString(16)}`);

    // The guest-agent connected to NATS and answered, signed: with the identity from its launch secret,
    // since the app disk holds no private key (checked below).
    // The key-broker asks the guest for fresh evidence over its nonce and checks the MAC under the
    // identity secret it sealed into this launch.
    const admitted = await send(
      'vm-lifecycle',
      keyBrokerSubject(KEY_BROKER_VERBS.admitGuest),
      { vmId: VM, workloadId: WORKLOAD },
      AdmitGuestReplySchema,
    );
    expect(admitted).toMatchObject({ vmId: VM });
    expect(admitted.admission).toBeTruthy();

    // With the software secure processor guest RAM is host memory: the RAM file holds the page. No
    // other file the host can read (runtime dirs, logs, the emulator's sealed state) holds the secret.
    const page = Buffer.alloc(LAUNCH_SECRET_PAGE.bytes);
    const fd = await open(ram, 'r');
    await fd.read(page, 0, page.length, LAUNCH_SECRET_PAGE.gpa);
    await fd.close();
    const table = parseSevSecretTable(page);
    const identity = table.find((e) => e.guid === LAUNCH_SECRET_GUIDS.identity);
    expect(identity?.data.length).toBeGreaterThanOrEqual(16);
    // The page carries the guest-agent's keys: the ones the guest owner gave the key-broker.
    expect(table.find((e) => e.guid === LAUNCH_SECRET_GUIDS.guestAgentNatsSeed)?.data).toEqual(
      Uint8Array.from(guestAgentIdentity.natsSeed),
    );
    const needles = [
      ...forms('identity secret', Buffer.from(identity!.data)),
      ...guestAgentNeedles(guestAgentIdentity),
    ];
    // As an attacker on the host: every file it can read (the app disk image, the runtime dirs, the
    // serial console and service logs, the emulator's state), but the guest's RAM file.
    const hostRoot = dirname(ns.hosts[HOST].runDir);
    const files = (await filesUnder(hostRoot)).filter((f) => f !== ram);
    const appDisk = files.find((f) => f.endsWith(`${VM}.app.ext4`));
    expect(appDisk, 'the app disk image is among the files searched').toBeDefined();
    const disk = await readFile(appDisk!);
    expect(disk.includes('trust.json')).toBe(true);
    for (const f of GUEST_AGENT_PRIVATE) expect(disk.includes(f), `${f} on the app disk`).toBe(false);
    const holders: string[] = [];
    for (const f of files) {
      const bytes = await readFile(f).catch(() => Buffer.alloc(0));
      for (const [name, needle] of needles) if (bytes.includes(needle)) holders.push(`${f}: ${name}`);
    }
    console.log(
      `[container guest attested launch] searched ${files.length} host files for ${needles.length} secret forms`,
    );
    expect([...new Set(holders)]).toEqual([]);
  }, 400_000);

  it('gives no secret to a launch whose measurement the owner does not accept', async () => {
    const other = { ...spec, cmdline: `${spec.cmdline} ccm.tampered=1` };
    const { verdict } = await launchAndJudge('cvm-sev2', other);
    await expect(verdict).rejects.toMatchObject({ code: 'MEASUREMENT_REJECTED' });
    await ns.client.send(HOST, 'destroy', { vmId: 'cvm-sev2' });
  }, 120_000);

  it("refuses another launch's secret (SECURE_PROCESSOR_REFUSED), and the guest's RAM file goes with it", async () => {
    const first = await launchAndJudge('cvm-sev3', spec);
    const packet = await first.verdict;
    const second = await launchAndJudge('cvm-sev4', spec);
    await second.verdict;
    const err = await ns.client
      .send(HOST, 'inject-secret', {
        vmId: 'cvm-sev4',
        packetHeader: packet.packetHeader,
        secret: packet.secret,
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SECURE_PROCESSOR_REFUSED' });
    for (const vmId of ['cvm-sev3', 'cvm-sev4', VM]) await ns.client.send(HOST, 'destroy', { vmId });
    for (const dir of [runDir, first.launched.vm.runDir])
      await expect(stat(join(dir, GUEST_RAM_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 120_000);
});
