import { spawnSync } from 'node:child_process';
import { CcmError, ErrorCodes, HostErrorCodes, type VmSpec } from '@ccm/contracts';
import { escapeOptionValue, tapName } from '@ccm/qmp';
import { macFor } from '../vm/guest-net.js';

/** QEMU arguments for a spec's disks, NICs (on their taps; a MAC made from the VM id when none is given) and fw_cfg files. Pure. */
export function deviceArgs(vmId: string, spec: VmSpec): string[] {
  const args: string[] = [];
  (spec.disks ?? []).forEach((d) => {
    args.push(
      '-drive',
      `file=${escapeOptionValue(d.path)},if=virtio,format=raw${d.readOnly ? ',readonly=on' : ''}`,
    );
  });
  (spec.nics ?? []).forEach((n, i) => {
    args.push(
      '-netdev',
      `tap,id=n${i},ifname=${tapName(vmId, i)},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=n${i},mac=${n.mac ?? macFor(vmId, i)}`,
    );
  });
  for (const f of spec.fwCfg ?? []) args.push('-fw_cfg', `name=${f.name},file=${escapeOptionValue(f.path)}`);
  return args;
}

function ip(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, out: `${r.stderr ?? ''}${r.stdout ?? ''}${r.error?.message ?? ''}`.trim() };
}

/**
 * Makes the taps of a VM's NICs, each on its bridge and up (a tap of the same name left by a crashed
 * run is replaced). A bridge that is not there is the request's fault (VALIDATION_FAILED, nothing made);
 * any other failure removes what was made and is HYPERVISOR_START_FAILED.
 */
export function createTaps(vmId: string, spec: VmSpec): void {
  const nics = spec.nics ?? [];
  for (const n of nics) {
    const show = ip(['-d', 'link', 'show', 'dev', n.bridge]);
    if (!show.ok || !/\bbridge\b/.test(show.out)) {
      throw new CcmError(ErrorCodes.ValidationFailed, `this host has no bridge ${n.bridge}`, {
        retryable: false,
        effect: 'none',
        details: { bridge: n.bridge },
      });
    }
  }
  nics.forEach((n, i) => {
    const tap = tapName(vmId, i);
    ip(['link', 'del', 'dev', tap]);
    for (const step of [
      ['tuntap', 'add', 'dev', tap, 'mode', 'tap'],
      ['link', 'set', 'dev', tap, 'master', n.bridge],
      ['link', 'set', 'dev', tap, 'up'],
    ]) {
      const r = ip(step);
      if (!r.ok) {
        removeTaps(vmId, spec);
        throw new CcmError(
          HostErrorCodes.HypervisorStartFailed,
          `could not make tap ${tap} on ${n.bridge}: ip ${step.join(' ')}: ${r.out}`,
          { retryable: false, effect: 'none' },
        );
      }
    }
  });
}

/** Removes a VM's taps (those that are there). */
export function removeTaps(vmId: string, spec: VmSpec): void {
  (spec.nics ?? []).forEach((_, i) => ip(['link', 'del', 'dev', tapName(vmId, i)]));
}
