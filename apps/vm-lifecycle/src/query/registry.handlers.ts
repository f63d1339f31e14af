import { Injectable } from '@nestjs/common';
import { VM_LIFECYCLE_QUERIES, vmLifecycleSubject, type VmLifecycleVerb } from '@ccm/contracts';
import { OnRequest } from '@ccm/messaging';
import { type z } from 'zod';
import { RegistryQueries } from './registry.queries.js';

type Q = typeof VM_LIFECYCLE_QUERIES;
type Req<V extends VmLifecycleVerb> = z.infer<Q[V]['request']>;
const query = (verb: VmLifecycleVerb) =>
  OnRequest({ subject: vmLifecycleSubject(verb), schema: VM_LIFECYCLE_QUERIES[verb].request });

/** The registry's queries over NATS: `ccm.cmd.vm-lifecycle.list-hosts|list-vms|get-vm|place`. */
@Injectable()
export class RegistryHandlers {
  constructor(private readonly queries: RegistryQueries) {}

  @query('list-hosts')
  listHosts() {
    return this.queries.hosts();
  }

  @query('list-vms')
  listVms(req: Req<'list-vms'>) {
    return this.queries.vms(req);
  }

  @query('get-vm')
  getVm(req: Req<'get-vm'>) {
    return this.queries.vm(req);
  }

  @query('place')
  place(req: Req<'place'>) {
    return this.queries.place(req);
  }
}
