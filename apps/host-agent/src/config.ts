import { envBool, envInt, serviceConfigSchema } from '@ccm/config';
import { DEFAULT_DOWNTIME_LIMIT_MS, HYPERVISOR_DRIVERS } from '@ccm/contracts';
import { chooseQemuBinary, defaultSeabios } from '@ccm/qmp';
import { join } from 'node:path';
import { z } from 'zod';
import { parseGuestNet } from './vm/guest-net.js';

/**
 * Root of the default runtime dirs: `<root>/<hostId>` per host, `<root>/sev-lab` for the lab shared by
 * the hosts of one machine (tmpfs: VMs do not survive a reboot either).
 */
export const DEFAULT_RUN_ROOT = '/run/ccm/host-agent';
/**
 * The BIOS the default QEMU maps: the firmware VMs boot (the sim loads it too), measured at an SEV
 * launch. trixie's SeaBIOS from CCM's rootfs when that is built (the default QEMU is then trixie's),
 * else Debian's /usr/share/seabios/bios-256k.bin.
 */
export const defaultVmFirmware = (): string => defaultSeabios();
/** Default cap on migration bandwidth (QEMU `max-bandwidth`). */
export const DEFAULT_MAX_BANDWIDTH_BYTES_PER_SEC = 1024 * 1024 * 1024;
/** A migration whose remaining dirty memory reaches no new low for this long has stalled. */
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;
/** Longest pause before switch-over (the guest is stopped) before the agent cancels and resumes it. */
export const DEFAULT_SWITCHOVER_TIMEOUT_MS = 120_000;
/** How often a running migration is sampled (query-migrate). */
export const DEFAULT_MIGRATION_POLL_MS = 100;
/** At most one progress event per migration per this period. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 500;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
/** How long a VM process may take to open its control (QMP) socket. */
export const DEFAULT_VM_START_TIMEOUT_MS = 20_000;
/** Per-command timeout on the QMP socket. */
export const DEFAULT_QMP_COMMAND_TIMEOUT_MS = 10_000;
/** Longest a migration may run in total before it is failed. */
export const DEFAULT_MIGRATION_MAX_DURATION_MS = 30 * 60_000;

/**
 * host-agent settings: the common service settings, CCM_HOST_ID (the id its command subjects carry),
 * the hypervisor driver and where it keeps VM runtime dirs, the data-plane address destinations listen
 * on, and the defaults of every convergence control.
 */
export const configSchema = serviceConfigSchema
  .extend({
    CCM_HOST_ID: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "-" and "_" only'),
    /** `qemu`: qemu-system-x86_64 over QMP; `sim`: the simulated hypervisor (a process per VM). */
    CCM_HYPERVISOR: z.enum(HYPERVISOR_DRIVERS).default('qemu'),
    /**
     * Per-VM runtime dirs (`vms/<vmId>`: control socket, pid, spec, serial log) and the emulator state;
     * default `/run/ccm/host-agent/<CCM_HOST_ID>` (see {@link hostRunDir}).
     */
    CCM_RUN_DIR: z.string().min(1).optional(),
    /**
     * QEMU binary (qemu driver). Default: CCM's trixie QEMU 10 (tools/trixie/qemu-system-x86_64) when
     * its rootfs is built, else qemu-system-x86_64 on PATH (see `chooseQemuBinary`).
     */
    CCM_QEMU_BIN: z
      .string()
      .min(1)
      .default(() => chooseQemuBinary(undefined, {}).binary),
    /** `auto` picks KVM only where it works (TCG otherwise). */
    CCM_QEMU_ACCEL: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
    CCM_VM_FIRMWARE: z.string().min(1).default(defaultVmFirmware),
    /**
     * SEV source: `auto` uses the firmware where /dev/sev exists (QEMU driver), else the software secure
     * processor; `hardware`, `emulated` force one; `off` disables SEV launches and transport.
     */
    CCM_SEV: z.enum(['auto', 'hardware', 'emulated', 'off']).default('auto'),
    /** SEV hardware: ASK ‖ ARK of the platform's product line (AMD's `ask_ark_<product>.cert`). */
    CCM_SEV_AMD_CERT_FILE: z.string().min(1).optional(),
    /** State dir of the software secure processor; default `<CCM_RUN_DIR>/sev-emulator`. */
    CCM_SEV_EMULATOR_DIR: z.string().min(1).optional(),
    /**
     * The lab CA that endorses the emulated chip (created on first use; default
     * `/run/ccm/host-agent/sev-lab`, shared by the hosts of one machine). Hosts that migrate SEV guests
     * to each other share one lab.
     */
    CCM_SEV_LAB_DIR: z.string().min(1).optional(),
    /** Address incoming VMs listen on and advertise to sources (this host's data-plane address). */
    CCM_MIGRATION_HOST: z.string().min(1).default('127.0.0.1'),
    CCM_MIGRATION_DOWNTIME_LIMIT_MS: envInt(1, 600_000).default(DEFAULT_DOWNTIME_LIMIT_MS),
    CCM_MIGRATION_MAX_BANDWIDTH_BYTES_PER_SEC: envInt(1, Number.MAX_SAFE_INTEGER).default(
      DEFAULT_MAX_BANDWIDTH_BYTES_PER_SEC,
    ),
    CCM_MIGRATION_AUTO_CONVERGE: envBool.default(false),
    /**
     * Default of a migration's `allowPostcopy` (off): QEMU `postcopy-ram` on both ends, and a stalled
     * pre-copy switches to post-copy instead of failing. Needs userfaultfd on the destination host.
     */
    CCM_MIGRATION_ALLOW_POSTCOPY: envBool.default(false),
    CCM_MIGRATION_STALL_TIMEOUT_MS: envInt(100, 24 * 3_600_000).default(DEFAULT_STALL_TIMEOUT_MS),
    CCM_SWITCHOVER_TIMEOUT_MS: envInt(100, 24 * 3_600_000).default(DEFAULT_SWITCHOVER_TIMEOUT_MS),
    CCM_MIGRATION_MAX_DURATION_MS: envInt(1_000, 7 * 24 * 3_600_000).default(
      DEFAULT_MIGRATION_MAX_DURATION_MS,
    ),
    CCM_MIGRATION_POLL_MS: envInt(10, 10_000).default(DEFAULT_MIGRATION_POLL_MS),
    CCM_PROGRESS_INTERVAL_MS: envInt(10, 600_000).default(DEFAULT_PROGRESS_INTERVAL_MS),
    CCM_HEARTBEAT_INTERVAL_MS: envInt(100, 600_000).default(DEFAULT_HEARTBEAT_INTERVAL_MS),
    CCM_VM_START_TIMEOUT_MS: envInt(100, 600_000).default(DEFAULT_VM_START_TIMEOUT_MS),
    CCM_QMP_COMMAND_TIMEOUT_MS: envInt(10, 600_000).default(DEFAULT_QMP_COMMAND_TIMEOUT_MS),
    /**
     * The guest network (qemu driver): `bridge=NAME,cidr=A.B.C.D/P,range=FIRST-LAST[,gateway=A.B.C.D]`.
     * A VM with a NIC on that bridge leases the first free address of the range (kept with the VM's
     * state, freed when it ends) and gets it, with its VM id, in the fw_cfg blob `opt/ccm/vm`; a NIC
     * without a MAC gets one made from the VM id. Unset: VMs get no per-VM blob.
     */
    CCM_GUEST_NET: z
      .string()
      .optional()
      .transform((v, ctx) => {
        if (v === undefined || v === '') return undefined;
        const net = parseGuestNet(v);
        if (typeof net !== 'string') return net;
        ctx.addIssue({ code: 'custom', message: net });
        return z.NEVER;
      }),
    /** Entry script of a simulated VM process; default: the built `sim/sim-vm.main.js` beside this app. */
    CCM_SIM_VM_ENTRY: z.string().min(1).optional(),
    /**
     * Sim hypervisor: each VM this agent launches (not an incoming one) starts a guest-agent as its
     * inside once it first runs, as a guest image's init would: `CCM_VM_ID` = the VM id, a simulated SNP
     * guest (booted from CCM_SIM_GUEST_IMAGE) on a secure processor of the host's lab, the bus settings
     * of this agent. It stops when the VM process ends. Default off (the VM is memory and a counter).
     */
    CCM_SIM_GUEST_AGENT: envBool.default(false),
    /** The image label the simulated guests boot (its launch digest is what the owner's policy accepts). */
    CCM_SIM_GUEST_IMAGE: z.string().min(1).max(200).default('ccm-guest'),
    /** Entry script of the guest-agent started inside sim VMs; default the built guest-agent beside this app. */
    CCM_SIM_GUEST_AGENT_ENTRY: z.string().min(1).optional(),
  })
  .refine((c) => !(c.CCM_HYPERVISOR === 'sim' && c.CCM_SEV === 'hardware'), {
    path: ['CCM_SEV'],
    message: 'the sim hypervisor has no SEV firmware: use auto, emulated or off',
  });

export type HostAgentConfig = z.infer<typeof configSchema>;

/** This host's runtime dir. */
export function hostRunDir(config: HostAgentConfig): string {
  return config.CCM_RUN_DIR ?? join(DEFAULT_RUN_ROOT, config.CCM_HOST_ID);
}
