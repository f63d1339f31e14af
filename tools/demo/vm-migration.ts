import { join } from 'node:path';
import {
  DescribeReplySchema,
  LaunchReplySchema,
  PlatformReplySchema,
  PrepareIncomingReplySchema,
  TransferReplySchema,
  subjects,
  type TransferView,
  type VmView,
} from '@ccm/contracts';
import { type Identity, type TrustStore } from '@ccm/keys';
import { openEnvelope, signedRequest } from '@ccm/messaging';
import { pollUntil } from '@ccm/testing';
import { type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ensureGuestImage, tinyGuestSpec, readCounters } from '../guest-image/guest-image.js';

export interface DemoContext {
  nc: NatsConnection;
  identity: Identity;
  trust: TrustStore;
  say: (m: string) => void;
}

const last = (xs: number[]) => xs[xs.length - 1] ?? -1;

/**
 * Live-migrates a running guest from host-a to host-b through the two host-agents, as the operator:
 * launch on A, wait for its counter, prepare the destination on B, start the migration on A, follow
 * the signed transfer events live, then show the guest's counter carrying on at B.
 */
export async function demoVmMigration(
  ctx: DemoContext,
  src: string,
  dst: string,
  opts: { failDestination: boolean },
): Promise<void> {
  const { nc, identity, trust, say } = ctx;
  const send = <S extends z.ZodType>(host: string, verb: string, data: unknown, schema: S, key: string) =>
    signedRequest(nc, identity, trust, subjects.hostCmd(host, verb), data, schema, {
      idempotencyKey: key,
      timeoutMs: 60_000,
    });

  for (const host of [src, dst]) {
    const p = await send(host, 'platform', {}, PlatformReplySchema, `platform:${host}:${Date.now()}`);
    const q = p.capabilities.hypervisor;
    say(
      `   ${host}: ${p.capabilities.driver} (${p.capabilities.accelerator}), ${q?.banner ?? q?.binary ?? 'no QEMU'}`,
    );
  }
  const image = await ensureGuestImage();
  say(
    `   guest image ${image.cached ? 'from cache' : `built in ${(image.elapsedMs / 1000).toFixed(1)} s`}: Debian kernel + busybox, a workload printing COUNTER n`,
  );
  const spec = tinyGuestSpec(image, { memoryMiB: 256, dirtyMiB: 32, dirtyRateMBps: 8 });
  const vmId = `demo-${Date.now().toString(36)}`;
  const migrationId = `${vmId}-move`;

  const launched = await send(src, 'launch', { vmId, spec }, LaunchReplySchema, `${vmId}:launch`);
  const srcLog = join(launched.vm.runDir, 'serial.log');
  await pollUntil(
    'the guest counting on the source',
    () => readCounters(srcLog),
    (c) => c.length >= 2,
    { timeoutMs: 90_000, intervalMs: 200 },
  );
  say(
    `   ${vmId} runs on ${src} (${launched.vm.driver}, pid ${launched.vm.pid}); its counter is at ${last(await readCounters(srcLog))}`,
  );

  const seen: string[] = [];
  const sub = nc.subscribe(`ccm.evt.transfer.${migrationId}.>`);
  const follow = (async () => {
    for await (const m of sub) {
      const env = openEnvelope(m.data, trust, z.record(z.string(), z.unknown()), { subject: m.subject });
      const what = m.subject.split('.').pop()!;
      seen.push(what);
      const p = (env.data['progress'] ?? env.data) as {
        ramTransferredBytes?: number;
        ramRemainingBytes?: number;
        passes?: number;
      };
      if (what === 'progressed' && p.ramTransferredBytes !== undefined) {
        say(
          `   [${env.source}] ${what}: ${(p.ramTransferredBytes / 1e6).toFixed(1)} MB sent, ${((p.ramRemainingBytes ?? 0) / 1e6).toFixed(1)} MB left, pass ${p.passes ?? 0}`,
        );
      } else {
        say(`   [${env.source}] ${what}`);
      }
      if (['completed', 'failed', 'cancelled'].includes(what)) break;
    }
  })();

  const incoming = await send(
    dst,
    'prepare-incoming',
    { vmId, spec, migrationId },
    PrepareIncomingReplySchema,
    `${migrationId}:prepare`,
  );
  say(`   ${dst} waits for the stream at ${incoming.uri}`);
  if (opts.failDestination && incoming.vm.pid) {
    process.kill(incoming.vm.pid, 'SIGKILL');
    say(`   --fail-destination: killed ${dst}'s QEMU (pid ${incoming.vm.pid}) before the migration starts`);
  }
  await send(
    src,
    'start-migration',
    { migrationId, vmId, uri: incoming.uri, downtimeLimitMs: 300 },
    TransferReplySchema,
    `${migrationId}:start`,
  );
  const describe = async (host: string) =>
    await send(
      host,
      'describe',
      { vmId },
      DescribeReplySchema,
      `${migrationId}:describe:${host}:${Date.now()}`,
    );
  const done = await pollUntil(
    'the migration to end',
    async () => (await describe(src)).migrations.find((t: TransferView) => t.migrationId === migrationId),
    (t) => !!t && ['Completed', 'Failed', 'Cancelled'].includes(t.phase),
    { timeoutMs: 120_000, intervalMs: 200 },
  );
  await Promise.race([follow, new Promise((r) => setTimeout(r, 2_000).unref())]);
  sub.unsubscribe();
  if (done?.phase !== 'Completed')
    throw new Error(`migration ${migrationId} ended ${done?.phase}: ${done?.reason ?? ''}`);
  const f = done.figures!;
  say(
    `   completed: total ${f.totalTimeMs} ms, downtime ${f.downtimeMs} ms, setup ${f.setupTimeMs} ms, ${(f.transferredBytes / 1e6).toFixed(1)} MB in ${f.passes} passes (QEMU's own figures)`,
  );

  const onDst = await pollUntil(
    'the guest running on the destination',
    async () => (await describe(dst)).vms.find((v: VmView) => v.vmId === vmId),
    (v) => v?.phase === 'Running',
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  const dstLog = join(onDst!.runDir, 'serial.log');
  const before = last(await readCounters(srcLog));
  const after = await pollUntil(
    'the counter to go on at the destination',
    () => readCounters(dstLog),
    (c) => c.length >= 2,
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  const srcNow = (await describe(src)).vms.find((v: VmView) => v.vmId === vmId);
  say(
    `   the guest's counter: last ${before} on ${src}, then ${after.slice(0, 3).join(', ')} … on ${dst}; the source is ${srcNow?.phase}`,
  );
  say(`   signed transfer events seen live: ${seen.join(' → ')}`);
  await send(dst, 'destroy', { vmId, reason: 'demo finished' }, z.unknown(), `${vmId}:destroy`);
}
