import { describe, expect, it } from 'vitest';
import {
  HOST_COMMANDS,
  HOST_VERBS,
  hostCommandSubject,
  hostEventSubject,
  isFinalTransferPhase,
  isFinalVmPhase,
  LaunchRequestSchema,
  StartMigrationRequestSchema,
  TRANSFER_EVENTS,
  transferEventSubject,
} from './host.js';
import { DataPlaneProgressSchema } from './migration-events.js';
import { natsPermissionsFor } from './permissions.js';

describe('host-agent contract', () => {
  it('has a request and a reply schema for every verb, on the host subjects a pinned host-agent may serve', () => {
    expect(Object.keys(HOST_COMMANDS).sort()).toEqual(Object.values(HOST_VERBS).sort());
    const own = natsPermissionsFor('host-agent', { hostId: 'h1' }).subscribe;
    expect(own).toContain('ccm.cmd.host.h1.>');
    expect(hostCommandSubject('h1', 'start-migration')).toBe('ccm.cmd.host.h1.start-migration');
  });

  it('publishes only on the aggregates the host-agent owns', () => {
    const pub = natsPermissionsFor('host-agent', { hostId: 'h1' }).publish;
    expect(pub).toContain('ccm.evt.host.h1.>');
    expect(pub).not.toContain('ccm.evt.host.>');
    expect(pub).toContain('ccm.evt.transfer.>');
    expect(hostEventSubject('h1', 'vm-changed')).toBe('ccm.evt.host.h1.vm-changed');
    expect(transferEventSubject('mig-1', 'progressed')).toBe('ccm.evt.transfer.mig-1.progressed');
  });

  it('fills launch defaults and refuses relative image paths', () => {
    const req = LaunchRequestSchema.parse({
      vmId: 'vm-1',
      spec: { memoryMiB: 512, kernel: '/boot/vmlinux' },
    });
    expect(req).toMatchObject({ start: 'running', spec: { cpus: 1 } });
    expect(
      LaunchRequestSchema.safeParse({ vmId: 'vm-1', spec: { memoryMiB: 512, kernel: 'vmlinux' } }).success,
    ).toBe(false);
    expect(LaunchRequestSchema.safeParse({ vmId: 'a.b', spec: { memoryMiB: 512 } }).success).toBe(false);
  });

  it('takes only tcp:HOST:PORT migration targets', () => {
    const ok = { migrationId: 'm', vmId: 'v', uri: 'tcp:10.0.0.2:4444' };
    expect(StartMigrationRequestSchema.safeParse(ok).success).toBe(true);
    for (const uri of ['exec:cat', 'unix:/tmp/s', 'tcp:10.0.0.2', 'tcp:host:port']) {
      expect(StartMigrationRequestSchema.safeParse({ ...ok, uri }).success, uri).toBe(false);
    }
  });

  it("reports transfer progress the saga-coordinator's DataPlaneProgress can read as it is", () => {
    const progress = {
      status: 'active',
      ramTransferredBytes: 10,
      ramRemainingBytes: 20,
      ramTotalBytes: 30,
      dirtyPagesRate: 5,
      pageSizeBytes: 4096,
      passes: 2,
      expectedDowntimeMs: 12,
      mbps: 100,
      cpuThrottlePercent: 0,
      elapsedMs: 400,
    };
    const event = TRANSFER_EVENTS.progressed.parse({
      migrationId: 'mig-1',
      step: 'migrate',
      bytesTransferred: 10,
      at: new Date().toISOString(),
      hostId: 'h1',
      vmId: 'vm-1',
      phase: 'Active',
      progress,
    });
    expect(DataPlaneProgressSchema.parse(event)).toMatchObject({
      migrationId: 'mig-1',
      bytesTransferred: 10,
    });
  });

  it('names the final phases', () => {
    expect(['MigratedAway', 'Destroyed', 'Failed', 'Died'].every(isFinalVmPhase)).toBe(true);
    expect(isFinalVmPhase('Incoming')).toBe(false);
    expect(['Completed', 'Cancelled', 'Failed'].every(isFinalTransferPhase)).toBe(true);
    expect(isFinalTransferPhase('AwaitingSwitchover')).toBe(false);
  });
});
