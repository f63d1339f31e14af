import { Inject, Injectable, Logger } from '@nestjs/common';
import { CcmError, ErrorCodes, type Envelope, type MoveFigures, type Peer } from '@ccm/contracts';
import { MESSAGING_OPTIONS, type MessagingOptions } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { CONNECTED, formatCidr, parseCidr, type ProbeSample } from '@ccm/wireguard';
import { type EntityManager } from 'typeorm';
import { PROBE_GAP_MS, type OverlayConfig } from '../config.js';
import { OVERLAY_SCHEMA } from '../db/migrations.js';
import { OVERLAY_DRIVER, type OverlayDriver } from '../driver/driver.js';
import { verifyAdmission } from './admission.js';
import { OverlayEvents, type EventCause } from './events.js';
import { moveAddress, peerSpec, peerSpecsFor, type MeshPeer } from './move.js';
import * as db from './store.js';

/** What `probe-workload` found (see {@link OverlayService.probe}). */
export type ProbeResult =
  | { answered: true; latencyMs: number; from: string; via: 'peer' | 'holder' }
  | {
      answered: false;
      reason: 'workload' | 'overlay-path';
      holderAnswered: boolean;
      triedFrom?: string;
    };

/**
 * The overlay's state changes. Each runs in the caller's transaction with the overlay's row locked
 * (one writer per overlay across replicas), changes the nodes through the driver, and commits only
 * when the nodes took the change; a driver failure rolls the rows back and is retryable.
 */
@Injectable()
export class OverlayService {
  private readonly log = new Logger(OverlayService.name);
  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: OverlayConfig,
    @Inject(MESSAGING_OPTIONS) private readonly messaging: MessagingOptions,
    @Inject(OVERLAY_DRIVER) private readonly driver: OverlayDriver,
    private readonly events: OverlayEvents,
  ) {}

  async createOverlay(
    m: EntityManager,
    overlayId: string,
    cidr: string,
  ): Promise<{ overlayId: string; cidr: string }> {
    let c: string;
    try {
      c = formatCidr(parseCidr(cidr));
    } catch (err) {
      throw new CcmError(ErrorCodes.ValidationFailed, (err as Error).message, {
        retryable: false,
        effect: 'none',
      });
    }
    await db.insertOverlay(m, overlayId, c);
    return { overlayId, cidr: c };
  }

  /**
   * Admits the guest a key-broker statement names (verified here, whoever carried it), or rotates
   * its key when it is a peer already with another key: every other node gets the new entry and
   * loses the old one in one step.
   */
  async admit(
    m: EntityManager,
    overlayId: string,
    statement: Envelope,
    cause: EventCause,
    vmId?: string,
  ): Promise<Peer> {
    const a = verifyAdmission(statement, this.messaging.trust, {
      now: Date.now(),
      maxAgeMs: this.config.CCM_OVERLAY_ADMISSION_MAX_AGE_MS,
      vmId,
    });
    const revoked = await db.revocation(m, a.vmId);
    if (revoked !== undefined) {
      throw new CcmError(ErrorCodes.Refused, `admission refused: ${a.vmId} was revoked (${revoked})`, {
        retryable: false,
        effect: 'none',
        details: { reason: 'revoked' },
      });
    }
    const cidr = await this.lockOverlay(m, overlayId);
    const before = await db.peerRow(m, overlayId, a.vmId);
    await db.upsertPeer(m, {
      overlayId,
      vmId: a.vmId,
      publicKey: a.wgPublicKey,
      endpoint: a.endpoint,
      evidenceDigest: a.evidenceDigest,
      admissionId: statement.id,
    });
    const nodeIp = await db.allocate(m, { overlayId, cidr, kind: 'node', owner: a.vmId, holder: a.vmId });
    const peers = await db.meshPeers(m, overlayId);
    const self = peers.find((p) => p.vmId === a.vmId)!;
    const rotated = before && before.publicKey !== a.wgPublicKey ? before.publicKey : undefined;
    if (!before || rotated) {
      const admitted = {
        overlayId,
        vmId: a.vmId,
        publicKey: a.wgPublicKey,
        nodeIp,
        admissionId: statement.id,
      };
      await this.events.record(
        m,
        'peer-admitted',
        { ...admitted, evidenceDigest: a.evidenceDigest, ...(rotated ? { previousKey: rotated } : {}) },
        cause,
      );
    }
    await this.nodes(async () => {
      await this.driver.joinNode(a.vmId, {
        publicKey: a.wgPublicKey,
        nodeIp,
        overlayCidr: cidr,
        endpoint: a.endpoint,
      });
      await this.driver.setPeers(a.vmId, peerSpecsFor(a.vmId, peers));
      const stale = rotated ? [{ publicKey: rotated, remove: true }] : [];
      await Promise.all(
        peers
          .filter((p) => p.vmId !== a.vmId)
          .map((p) => this.driver.setPeers(p.vmId, [...stale, peerSpec(self)])),
      );
    });
    return this.describePeer(overlayId, self, a.evidenceDigest);
  }

  /** Removes a guest from one overlay (compensation of add-peer); absent is fine. */
  async removePeer(m: EntityManager, overlayId: string, vmId: string): Promise<boolean> {
    await this.lockOverlay(m, overlayId);
    const peers = await db.meshPeers(m, overlayId);
    const gone = peers.find((p) => p.vmId === vmId);
    if (!gone) return false;
    if (gone.workloadIps.length > 0) {
      throw new CcmError(
        ErrorCodes.Conflict,
        `${vmId} still holds ${gone.workloadIps.join(', ')}: move it back first`,
        {
          retryable: true,
          effect: 'none',
        },
      );
    }
    await db.deletePeer(m, overlayId, vmId);
    await this.nodes(() => this.unlink(gone, peers));
    return true;
  }

  /** Revokes a guest: removed from every peer of every overlay, and never admitted again. */
  async revoke(m: EntityManager, vmId: string, reason: string, cause: EventCause): Promise<string[]> {
    await db.insertRevocation(m, vmId, reason);
    const overlays = await db.overlaysOf(m, vmId);
    for (const overlayId of overlays) {
      await this.lockOverlay(m, overlayId);
      const peers = await db.meshPeers(m, overlayId);
      await db.deletePeer(m, overlayId, vmId);
      await this.events.record(m, 'peer-revoked', { overlayId, vmId, reason }, cause);
      await this.nodes(() =>
        this.unlink(
          peers.find((p) => p.vmId === vmId)!,
          peers,
        ),
      );
    }
    return overlays;
  }

  /** Gives a workload its /32 on the peer that runs it (the guest adds it; every node routes it). */
  async assignWorkload(
    m: EntityManager,
    r: { overlayId: string; workloadId: string; vmId: string; port: number },
  ) {
    const existing = await db.workloadRow(m, r.workloadId);
    if (existing && existing.overlayId !== r.overlayId) {
      throw new CcmError(
        ErrorCodes.Conflict,
        `workload ${r.workloadId} has an address in overlay ${existing.overlayId}`,
        {
          retryable: false,
          effect: 'none',
        },
      );
    }
    const cidr = await this.lockOverlay(m, r.overlayId);
    if (!(await db.peerRow(m, r.overlayId, r.vmId))) throw this.unknownPeer(r.overlayId, r.vmId);
    if (existing) return { ...r, ip: existing.ip, vmId: existing.holder, port: existing.port };
    const ip = await db.allocate(m, {
      overlayId: r.overlayId,
      cidr,
      kind: 'workload',
      owner: r.workloadId,
      holder: r.vmId,
      port: r.port,
    });
    const peers = await db.meshPeers(m, r.overlayId);
    const self = peers.find((p) => p.vmId === r.vmId)!;
    await this.nodes(async () => {
      await this.driver.addAddress(r.vmId, ip);
      await Promise.all(
        peers.filter((p) => p !== self).map((p) => this.driver.setPeers(p.vmId, [peerSpec(self)])),
      );
    });
    return { ...r, ip };
  }

  /** Moves a workload's /32 to `to` on every peer (a cut-over, or its revert when `to` is the source). */
  async move(m: EntityManager, w: db.WorkloadRow, to: string): Promise<MoveFigures> {
    await this.lockOverlay(m, w.overlayId);
    if (!(await db.peerRow(m, w.overlayId, to))) throw this.unknownPeer(w.overlayId, to);
    const current = await db.workloadRow(m, w.workloadId);
    const from = current!.holder;
    await db.setHolder(m, w.overlayId, w.ip, to);
    const peers = await db.meshPeers(m, w.overlayId);
    return this.nodes(() =>
      moveAddress(this.driver, {
        ip: w.ip,
        from,
        to,
        port: w.port,
        peers,
        answerWaitMs: this.config.CCM_OVERLAY_ANSWER_WAIT_MS,
      }),
    );
  }

  /**
   * Probes the workload from a peer other than its holder (and other than `source`, the migration's, when
   * there is a third) until it answers or the timeout ends. When
   * there is no other peer, or that peer gets no answer, it probes from the holder itself (the
   * workload answering at its /32 on its own guest): with no other peer that is the answer
   * (`via: 'holder'`); when another peer could not connect the result names what failed
   * (`overlay-path`: the holder answers, the other peer does not reach it; `workload`: nobody answers).
   */
  async probe(m: EntityManager, w: db.WorkloadRow, source?: string): Promise<ProbeResult> {
    if (this.driver.restoreNode) await this.restoreNodes(m, w.overlayId, await this.cidrOf(m, w.overlayId));
    const peers = await db.meshPeers(m, w.overlayId);
    // Not from the migration's source when a third peer can ask: a real source guest still routes the
    // /32 to its own (frozen, locked) container until that is killed.
    const other = (
      peers.find((p) => p.vmId !== w.holder && p.vmId !== source) ?? peers.find((p) => p.vmId !== w.holder)
    )?.vmId;
    const window = this.config.CCM_OVERLAY_PROBE_TIMEOUT_MS;
    if (other !== undefined) {
      const latencyMs = await this.probeFrom(other, w, window);
      if (latencyMs !== undefined) return { answered: true, latencyMs, from: other, via: 'peer' };
    }
    // The holder's check only says which of the two failed when a peer was tried: half the window.
    const local = await this.probeFrom(w.holder, w, other === undefined ? window : Math.ceil(window / 2));
    if (other === undefined && local !== undefined) {
      return { answered: true, latencyMs: local, from: w.holder, via: 'holder' };
    }
    return {
      answered: false,
      reason: local === undefined ? 'workload' : 'overlay-path',
      holderAnswered: local !== undefined,
      ...(other !== undefined ? { triedFrom: other } : {}),
    };
  }

  /**
   * ms to the first answer by the holder from node `from`, or undefined when none came within
   * `windowMs`. Probes keep coming (a new connection every {@link PROBE_GAP_MS}, each waiting
   * CCM_OVERLAY_PROBE_CONNECT_TIMEOUT_MS for its answer) while a path just moved settles: the first
   * packets to a peer whose allowed IPs just changed, or a guest that answers slowly, cost one
   * probe each, not the step. Probes still in flight at the deadline are waited for (one connect
   * timeout at most) and count.
   */
  private async probeFrom(from: string, w: db.WorkloadRow, windowMs: number): Promise<number | undefined> {
    const t0 = performance.now();
    const connect = this.config.CCM_OVERLAY_PROBE === 'connect';
    const byHolder = (s: ProbeSample) => s.by === w.holder || (connect && s.by === CONNECTED);
    const watch = this.driver.watch(from, w.ip, w.port, {
      timeoutMs: this.config.CCM_OVERLAY_PROBE_CONNECT_TIMEOUT_MS,
      gapMs: PROBE_GAP_MS,
    });
    const deadline = t0 + windowMs;
    while (!watch.samples.some(byHolder) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2));
    }
    const samples = await watch.stop();
    const hit = samples.find(byHolder);
    if (hit) return Math.max(0, hit.t - t0);
    const answers = samples.filter((s) => s.by !== undefined).map((s) => s.by);
    this.log.warn(
      `no answer at ${w.ip}:${w.port} from ${from} in ${(performance.now() - t0).toFixed(0)} ms: ${samples.length} probe(s)` +
        (answers.length ? `, answered by ${[...new Set(answers)].join(', ')} only` : ', none answered'),
    );
    return undefined;
  }

  async describe(
    m: EntityManager,
    overlayId: string,
  ): Promise<{ overlayId: string; cidr: string; peers: Peer[] }> {
    const cidr = await this.cidrOf(m, overlayId);
    const peers = await db.meshPeers(m, overlayId);
    const out: Peer[] = [];
    for (const p of peers)
      out.push(this.describePeer(overlayId, p, (await db.peerRow(m, overlayId, p.vmId))!.evidenceDigest));
    return { overlayId, cidr, peers: out };
  }

  private async cidrOf(m: EntityManager, overlayId: string): Promise<string> {
    const rows = await m.query<Array<{ cidr: string }>>(
      `SELECT cidr::text AS cidr FROM "${OVERLAY_SCHEMA}".overlay WHERE overlay_id = $1`,
      [overlayId],
    );
    if (!rows[0]) throw new CcmError(ErrorCodes.NotFound, `no overlay ${overlayId}`, { retryable: false });
    return rows[0].cidr;
  }

  private describePeer(overlayId: string, p: MeshPeer, evidenceDigest: string): Peer {
    return {
      overlayId,
      vmId: p.vmId,
      publicKey: p.publicKey,
      ...(p.endpoint ? { endpoint: p.endpoint } : {}),
      nodeIp: p.nodeIp,
      evidenceDigest,
      workloadIps: [...p.workloadIps],
    };
  }

  private async unlink(gone: MeshPeer, peers: readonly MeshPeer[]): Promise<void> {
    await Promise.all(
      peers
        .filter((p) => p.vmId !== gone.vmId)
        .map((p) => this.driver.setPeers(p.vmId, [{ publicKey: gone.publicKey, remove: true }])),
    );
    await this.driver.leaveNode(gone.vmId);
  }

  private unknownPeer(overlayId: string, vmId: string): CcmError {
    return new CcmError(ErrorCodes.NotFound, `${vmId} is not a peer of overlay ${overlayId}`, {
      retryable: false,
      effect: 'none',
    });
  }

  /** Takes the overlay's row lock (one writer across replicas) and brings in-process nodes up to the rows. */
  private async lockOverlay(m: EntityManager, overlayId: string): Promise<string> {
    const cidr = await db.lockOverlay(m, overlayId);
    await this.restoreNodes(m, overlayId, cidr);
    return cidr;
  }

  /** With a driver whose nodes live in this process: each peer's node as the rows say (see `restoreNode`). */
  private async restoreNodes(m: EntityManager, overlayId: string, cidr: string): Promise<void> {
    const restore = this.driver.restoreNode?.bind(this.driver);
    if (!restore) return;
    const peers = await db.meshPeers(m, overlayId);
    await this.nodes(async () => {
      for (const p of peers) {
        const node = { publicKey: p.publicKey, nodeIp: p.nodeIp, overlayCidr: cidr, endpoint: p.endpoint };
        await restore(p.vmId, node, peerSpecsFor(p.vmId, peers), p.workloadIps);
      }
    });
  }

  /** Runs node changes; a failure there is UNAVAILABLE (retryable) and the rows roll back. */
  private async nodes<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof CcmError) throw err;
      throw new CcmError(
        ErrorCodes.Unavailable,
        `the overlay's nodes did not take the change: ${(err as Error).message}`,
        {
          retryable: true,
          effect: 'maybe',
          cause: err,
        },
      );
    }
  }
}
