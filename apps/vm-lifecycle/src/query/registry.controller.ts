import { Controller, Get, Param, Query, UseFilters } from '@nestjs/common';
import {
  GetVmRequestSchema,
  ListVmsRequestSchema,
  type ListHostsReply,
  type ListVmsReply,
  type VmRecord,
} from '@ccm/contracts';
import { CcmErrorFilter, parseInput } from '@ccm/runtime';
import { RegistryQueries } from './registry.queries.js';

/** `GET /hosts`, `GET /vms?host=&phase=&limit=` and `GET /vms/:id?host=`, validated by the contracts. */
@Controller()
@UseFilters(CcmErrorFilter)
export class RegistryController {
  constructor(private readonly queries: RegistryQueries) {}

  @Get('hosts')
  hosts(): Promise<ListHostsReply> {
    return this.queries.hosts();
  }

  @Get('vms')
  vms(@Query() query: Record<string, unknown>): Promise<ListVmsReply> {
    return this.queries.vms(parseInput(ListVmsRequestSchema, 'query', query));
  }

  @Get('vms/:id')
  vm(@Param('id') id: string, @Query() query: Record<string, unknown>): Promise<VmRecord> {
    return this.queries.vm(parseInput(GetVmRequestSchema, 'VM query', { ...query, vmId: id }));
  }
}
