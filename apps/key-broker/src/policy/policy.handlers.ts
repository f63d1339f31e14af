import { Injectable } from '@nestjs/common';
import {
  GetPolicyRequestSchema,
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  ListPoliciesRequestSchema,
  POLICY_AGGREGATE,
  PutPolicyRequestSchema,
  subjects,
  type GetPolicyReply,
  type ListPoliciesReply,
  type PolicyVersion,
} from '@ccm/contracts';
import { OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { type EntityManager } from 'typeorm';
import { type z } from 'zod';
import { PolicyStore } from './policy.store.js';

/**
 * The guest owner's policy commands. Only the guest-owner key may send them: the operator and every
 * service (a compromised coordinator included) get UNAUTHORIZED. Each change is a new version and an
 * event (`ccm.evt.policy.<class>.changed`) written in the same transaction. The same verbs are served
 * over HTTP by {@link PolicyHttpController}, under the same rule.
 */
@Injectable()
export class PolicyHandlers {
  constructor(
    private readonly store: PolicyStore,
    private readonly outbox: OutboxService,
  ) {}

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.putPolicy),
    schema: PutPolicyRequestSchema,
    idempotent: true,
    allow: [GUEST_OWNER],
  })
  put(req: z.infer<typeof PutPolicyRequestSchema>, ctx: MessageContext): Promise<PolicyVersion> {
    return this.putIn(ctx.manager!, req, ctx.envelope.source, ctx.envelope.id);
  }

  /** A new policy version and its event, in the transaction `m`. */
  async putIn(
    m: EntityManager,
    req: z.infer<typeof PutPolicyRequestSchema>,
    by: string,
    causationId: string,
  ): Promise<PolicyVersion> {
    const saved = await this.store.put(m, req.policy, req.expectedVersion, by);
    await this.outbox.enqueue(m, subjects.evt(POLICY_AGGREGATE, saved.workloadClass, 'changed'), {
      type: 'policy.changed',
      data: saved,
      causationid: causationId,
    });
    const { policy: _policy, ...version } = saved;
    return version;
  }

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.getPolicy),
    schema: GetPolicyRequestSchema,
    allow: [GUEST_OWNER],
  })
  get(req: z.infer<typeof GetPolicyRequestSchema>): Promise<GetPolicyReply> {
    return this.store.get(req.workloadClass, req.version);
  }

  @OnRequest({
    subject: keyBrokerSubject(KEY_BROKER_VERBS.listPolicies),
    schema: ListPoliciesRequestSchema,
    allow: [GUEST_OWNER],
  })
  list(): Promise<ListPoliciesReply> {
    return this.store.list();
  }
}
