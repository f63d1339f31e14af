import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { CcmError, ErrorCodes, type GuestOverlaySample } from '@ccm/contracts';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { cidrContains, ipv4ToInt, parseCidr, WgInvalidArgumentError, type PeerSpec } from '@ccm/wireguard';
import { CheckpointService } from '../checkpoint/checkpoint.service.js';
import { type GuestAgentConfig } from '../config.js';
import { overlayEndpoint } from './overlay-config.js';
import {
  SimGuestOverlay,
  WireGuardGuestOverlay,
  type GuestOverlayDriver,
  type GuestProbe,
} from './drivers.js';

/** Watches one guest runs at once, and how long one may run before it stops itself. */
export const MAX_WATCHES = 8;
export const WATCH_MAX_MS = 120_000;

interface Up {
  readonly nodeIp: string;
  readonly overlayCidr: string;
}

interface Watch {
  readonly probe: GuestProbe;
  readonly t0: number;
  stopped: boolean;
  readonly timer: NodeJS.Timeout;
}

/**
 * The guest side of the overlay: the guest's WireGuard interface, keyed with its attested identity
 * key (what the key-broker's admission statement names), the peer set the network-overlay sends, and
 * the workload /32s it holds. The private key stays in this process and the driver.
 */
@Injectable()
export class GuestOverlay implements OnModuleDestroy {
  private readonly driver: GuestOverlayDriver;
  private current?: Up;
  private readonly workloadIps = new Set<string>();
  private readonly watches = new Map<string, Watch>();

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: GuestAgentConfig,
    private readonly cp: CheckpointService,
  ) {
    this.driver =
      config.CCM_GUEST_OVERLAY_DRIVER === 'wireguard'
        ? new WireGuardGuestOverlay(
            config.CCM_GUEST_OVERLAY_INTERFACE,
            config.CCM_GUEST_OVERLAY_PORT,
            config.CCM_GUEST_OVERLAY_WG_MODE,
          )
        : new SimGuestOverlay(config.CCM_VM_ID);
  }

  /** The guest's WireGuard public key: its identity key's public half, base64. */
  get publicKey(): string {
    return this.cp.identity.publicKey.toString('base64');
  }

  async up(req: { publicKey: string; nodeIp: string; overlayCidr: string }) {
    if (req.publicKey !== this.publicKey) {
      throw new CcmError(ErrorCodes.Refused, `the overlay admitted another key than guest ${this.vmId}'s`, {
        retryable: false,
        effect: 'none',
        details: { reason: 'not-this-guest' },
      });
    }
    const cidr = checked(() => parseCidr(req.overlayCidr));
    checked(() => {
      if (!cidrContains(cidr, ipv4ToInt(req.nodeIp))) {
        throw new WgInvalidArgumentError('node address', req.nodeIp, `an address in ${req.overlayCidr}`);
      }
    });
    const now = this.current;
    if (now && (now.nodeIp !== req.nodeIp || now.overlayCidr !== req.overlayCidr)) {
      throw new CcmError(
        ErrorCodes.Conflict,
        `guest ${this.vmId} is on overlay ${now.overlayCidr} as ${now.nodeIp}: overlay-down first`,
        { retryable: false, effect: 'none' },
      );
    }
    await this.act(() =>
      this.driver.up({ privateKey: this.privateKey(), nodeIp: req.nodeIp, overlayCidr: req.overlayCidr }),
    );
    this.current = { nodeIp: req.nodeIp, overlayCidr: req.overlayCidr };
    const endpoint = overlayEndpoint(this.config);
    return {
      publicKey: this.publicKey,
      interface: this.config.CCM_GUEST_OVERLAY_INTERFACE,
      ...(endpoint ? { endpoint } : {}),
    };
  }

  async setPeers(peers: readonly PeerSpec[]) {
    this.need();
    if (peers.some((p) => p.publicKey === this.publicKey)) {
      throw new CcmError(ErrorCodes.ValidationFailed, `guest ${this.vmId} cannot be its own peer`, {
        retryable: false,
        effect: 'none',
      });
    }
    await this.act(() => this.driver.setPeers(peers));
    return { applied: peers.length };
  }

  /** Adds (cut-over target) or removes (source, rollback) a workload /32 on this guest's interface. */
  async address(ip: string, present: boolean) {
    const up = this.need();
    checked(() => {
      if (!cidrContains(parseCidr(up.overlayCidr), ipv4ToInt(ip)) || ip === up.nodeIp) {
        throw new WgInvalidArgumentError(
          'workload address',
          ip,
          `an address in ${up.overlayCidr} other than the node's`,
        );
      }
    });
    if (present) {
      await this.act(() => this.driver.addAddress(ip));
      this.workloadIps.add(ip);
    } else {
      await this.act(() => this.driver.removeAddress(ip));
      this.workloadIps.delete(ip);
    }
    return { ip, present };
  }

  async down() {
    const was = this.current !== undefined;
    await this.stopWatches();
    await this.act(() => this.driver.down());
    this.current = undefined;
    this.workloadIps.clear();
    return { down: was };
  }

  async state() {
    const up = this.current;
    return {
      up: up !== undefined,
      publicKey: this.publicKey,
      ...(up ? { nodeIp: up.nodeIp } : {}),
      addresses: up ? [up.nodeIp, ...this.workloadIps] : [],
      peers: up ? await this.act(() => this.driver.peers()) : [],
    };
  }

  /** Starts probing ip:port from this guest (idempotent by watch id). */
  watch(req: { watchId: string; ip: string; port: number; timeoutMs?: number; gapMs?: number }) {
    this.need();
    if (!this.watches.has(req.watchId)) {
      if (this.watches.size >= MAX_WATCHES) {
        throw new CcmError(ErrorCodes.Unavailable, `guest ${this.vmId} runs ${MAX_WATCHES} watches already`, {
          retryable: true,
          effect: 'none',
        });
      }
      checked(() => ipv4ToInt(req.ip));
      const probe = this.driver.probe(req.ip, req.port, req);
      const timer = setTimeout(() => void this.stopWatch(req.watchId), WATCH_MAX_MS);
      timer.unref();
      this.watches.set(req.watchId, { probe, t0: performance.now(), stopped: false, timer });
    }
    return { watchId: req.watchId };
  }

  /** A watch's samples from index `from` on (ms since it started); `stop` ends it and forgets it. */
  async samples(req: { watchId: string; from: number; stop: boolean }) {
    const w = this.watches.get(req.watchId);
    if (!w) {
      throw new CcmError(ErrorCodes.NotFound, `no watch ${req.watchId} on guest ${this.vmId}`, {
        retryable: false,
        effect: 'none',
      });
    }
    if (req.stop) await this.stopWatch(req.watchId);
    const samples: GuestOverlaySample[] = w.probe.samples.slice(req.from).map((s) => ({
      t: Math.max(0, s.t - w.t0),
      ...(s.by !== undefined ? { by: s.by.slice(0, 100) } : {}),
    }));
    return { samples, stopped: w.stopped };
  }

  async onModuleDestroy(): Promise<void> {
    await this.stopWatches();
    await this.driver.down().catch(() => undefined);
  }

  private async stopWatch(id: string): Promise<void> {
    const w = this.watches.get(id);
    if (!w) return;
    this.watches.delete(id);
    clearTimeout(w.timer);
    w.stopped = true;
    await w.probe.stop();
  }

  private async stopWatches(): Promise<void> {
    await Promise.all([...this.watches.keys()].map((id) => this.stopWatch(id)));
  }

  private get vmId(): string {
    return this.config.CCM_VM_ID;
  }

  /** The raw X25519 private key, base64, as `wg` takes it: the identity key's, inside the guest only. */
  private privateKey(): string {
    const der = this.cp.identity.privateKey.export({ format: 'der', type: 'pkcs8' });
    return der.subarray(-32).toString('base64');
  }

  private need(): Up {
    if (!this.current) {
      throw new CcmError(ErrorCodes.Conflict, `guest ${this.vmId} has no overlay interface up`, {
        retryable: false,
        effect: 'none',
        details: { reason: 'overlay-down' },
      });
    }
    return this.current;
  }

  /** Runs an interface change: bad input is VALIDATION_FAILED, a failing tool UNAVAILABLE (retryable). */
  private async act<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WgInvalidArgumentError) throw invalid(err);
      throw new CcmError(
        ErrorCodes.Unavailable,
        `guest ${this.vmId}'s overlay interface did not take the change: ${(err as Error).message}`,
        { retryable: true, effect: 'maybe', cause: err },
      );
    }
  }
}

function invalid(err: WgInvalidArgumentError): CcmError {
  return new CcmError(ErrorCodes.ValidationFailed, err.message, { retryable: false, effect: 'none' });
}

/** Runs a check of libs/wireguard's validators; what they refuse is VALIDATION_FAILED. */
function checked<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof WgInvalidArgumentError) throw invalid(err);
    throw err;
  }
}
