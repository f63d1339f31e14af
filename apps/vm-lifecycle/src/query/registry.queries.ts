import { Inject, Injectable } from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  VmLifecycleErrorCodes,
  type GetVmRequest,
  type ListHostsReply,
  type ListVmsReply,
  type PlaceReply,
  type VmRecord,
} from '@ccm/contracts';
import { DATA_SOURCE } from '@ccm/persistence';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type DataSource, type EntityManager } from 'typeorm';
import { type VmLifecycleConfig } from '../config.js';
import { placeVm, refusalText, type PlacementRequest } from '../placement/placement.js';
import { hostRows, placementHost, vmRow, vmRows } from '../registry/store.js';

/** A placement nobody can take: typed, with every host and why (`details.rejected`). */
export function placementRefused(what: string, rejected: PlaceReply['rejected']): CcmError {
  return new CcmError(
    VmLifecycleErrorCodes.PlacementRefused,
    `no host can take ${what}: ${refusalText(rejected)}`,
    {
      retryable: false,
      effect: 'none',
      details: { rejected },
    },
  );
}

/** The registry's answers, shared by the NATS handlers and the HTTP controller. */
@Injectable()
export class RegistryQueries {
  constructor(
    @Inject(DATA_SOURCE) private readonly ds: DataSource,
    @Inject(SERVICE_CONFIG) private readonly config: VmLifecycleConfig,
  ) {}

  get livenessTimeoutMs(): number {
    return this.config.CCM_HOST_LIVENESS_TIMEOUT_MS;
  }

  async hosts(m: EntityManager = this.ds.manager): Promise<ListHostsReply> {
    return { hosts: await hostRows(m, this.livenessTimeoutMs), livenessTimeoutMs: this.livenessTimeoutMs };
  }

  async vms(q: { host?: string; phase?: string; limit: number }): Promise<ListVmsReply> {
    return { vms: await vmRows(this.ds.manager, q) };
  }

  async vm(q: GetVmRequest): Promise<VmRecord> {
    const found = await vmRow(this.ds.manager, q.vmId, q.host);
    if (!found) {
      throw new CcmError(
        ErrorCodes.NotFound,
        `no VM ${q.vmId}${q.host ? ` on ${q.host}` : ''} in the registry`,
        {
          retryable: false,
        },
      );
    }
    return found;
  }

  /** Placement over the hosts as they are now. @throws PLACEMENT_REFUSED naming every host */
  async place(req: PlacementRequest, m: EntityManager = this.ds.manager): Promise<PlaceReply> {
    const { hosts } = await this.hosts(m);
    const r = placeVm(hosts.map(placementHost), req);
    if (!r.ok) throw placementRefused(`a VM of ${req.memoryMiB} MiB and ${req.cpus} vCPU(s)`, r.rejected);
    return { hostId: r.hostId, rejected: r.rejected };
  }

  /** Whether placement accepts `target` for the VM. @throws PLACEMENT_REFUSED naming why `target` was rejected */
  async checkTarget(target: string, what: string, req: PlacementRequest, m: EntityManager): Promise<void> {
    const { hosts } = await this.hosts(m);
    const r = placeVm(hosts.map(placementHost), { ...req, candidates: [target] });
    if (!r.ok)
      throw placementRefused(
        what,
        r.rejected.filter((x) => x.hostId === target),
      );
  }
}
