import { Logger } from '@nestjs/common';
import {
  GUEST_VERBS,
  GuestOverlayAddressReplySchema,
  GuestOverlayDownReplySchema,
  GuestOverlayPeersReplySchema,
  GuestOverlaySamplesReplySchema,
  GuestOverlayUpReplySchema,
  subjects,
  type GuestVerb,
} from '@ccm/contracts';
import { type MessageBus } from '@ccm/messaging';
import { type PeerSpec, type ProbePace, type ProbeSample } from '@ccm/wireguard';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type NodeSpec, type OverlayDriver, type Watch } from './driver.js';

/** How often a watch reads its samples from the observing guest. */
const READ_EVERY_MS = 10;

/**
 * The overlay's nodes are guest-agents: each call is a signed command on
 * `ccm.cmd.guest.<vmId>.overlay-*`, and the guest changes its own interface with its own key (the
 * private key never leaves it). A watch runs in the observing guest; its samples are read back every
 * {@link READ_EVERY_MS} and put on this process's clock (the guest's offsets from the watch's start,
 * plus the midpoint of the start request's round trip).
 */
export class GuestAgentDriver implements OverlayDriver {
  private readonly log = new Logger(GuestAgentDriver.name);

  constructor(
    private readonly bus: MessageBus,
    private readonly timeoutMs: number,
  ) {}

  async joinNode(vmId: string, node: NodeSpec): Promise<void> {
    await this.call(
      vmId,
      GUEST_VERBS.overlayUp,
      { publicKey: node.publicKey, nodeIp: node.nodeIp, overlayCidr: node.overlayCidr },
      GuestOverlayUpReplySchema,
    );
  }

  /**
   * Best effort: a guest that is gone or refuses is left as it is. What shuts a revoked guest out is
   * every other peer dropping it (the service does that first), not the guest's own cooperation.
   */
  async leaveNode(vmId: string): Promise<void> {
    await this.call(vmId, GUEST_VERBS.overlayDown, {}, GuestOverlayDownReplySchema).catch((err: unknown) =>
      this.log.warn(`guest ${vmId} did not take its overlay interface down: ${(err as Error).message}`),
    );
  }

  async setPeers(vmId: string, peers: readonly PeerSpec[]): Promise<void> {
    if (peers.length === 0) return;
    await this.call(vmId, GUEST_VERBS.overlayPeers, { peers }, GuestOverlayPeersReplySchema);
  }

  async addAddress(vmId: string, ip: string): Promise<void> {
    await this.call(vmId, GUEST_VERBS.overlayAddress, { ip, present: true }, GuestOverlayAddressReplySchema);
  }

  async removeAddress(vmId: string, ip: string): Promise<void> {
    await this.call(vmId, GUEST_VERBS.overlayAddress, { ip, present: false }, GuestOverlayAddressReplySchema);
  }

  watch(fromVmId: string, ip: string, port: number, pace?: ProbePace): Watch {
    const watchId = `w-${randomUUID()}`;
    const samples: ProbeSample[] = [];
    let base = 0;
    let stopped = false;
    const read = async (stop: boolean) => {
      const r = await this.call(
        fromVmId,
        GUEST_VERBS.overlaySamples,
        { watchId, from: samples.length, stop },
        GuestOverlaySamplesReplySchema,
      );
      for (const s of r.samples) samples.push({ t: base + s.t, by: s.by });
    };
    const loop = (async () => {
      const sent = performance.now();
      await this.call(
        fromVmId,
        GUEST_VERBS.overlayWatch,
        { watchId, ip, port, ...pace },
        z.object({}).loose(),
      );
      base = (sent + performance.now()) / 2;
      while (!stopped) {
        await read(false);
        await new Promise((r) => setTimeout(r, READ_EVERY_MS));
      }
      await read(true);
    })();
    // A failed watch leaves no samples: the move then reports no brownout figure, as with a mute observer.
    const done = loop.catch((err: unknown) =>
      this.log.warn(`watch from ${fromVmId} failed: ${(err as Error).message}`),
    );
    return {
      samples,
      stop: async () => {
        stopped = true;
        await done;
        return samples;
      },
    };
  }

  private call<S extends z.ZodType>(
    vmId: string,
    verb: GuestVerb,
    data: unknown,
    reply: S,
  ): Promise<z.infer<S>> {
    return this.bus.request(subjects.guestCmd(vmId, verb), data, reply, { timeoutMs: this.timeoutMs });
  }
}
