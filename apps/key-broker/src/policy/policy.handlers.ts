import { Injectable } from '@nestjs/common';
import {
  GetPolicyRequestSchema,
  GUEST_OWNER,
  KEY_BROKER_VERBS,
  keyBrokerSubject,
  POLICY_AGGREGATE,
  PutPolicyRequestSchema,
  subjects,
  type GetPolicyReply,
  type PolicyVersion,
} from '@ccm/contracts';
import { OnRequest, OutboxService, type MessageContext } from '@ccm/messaging';
import { type z } from 'zod';
import { PolicyStore } from './policy.store.js';

/**
 * The guest owner's policy commands. Only the guest-owner key may send them: the operator and every
 * service (a compromised coordinator included) get UNAUTHORIZED. Each change is a new version and an
 * event (`ccm.evt.policy.<class>.changed`) written in the same transaction.
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
  async put(req: z.infer<typeof PutPolicyRequestSchema>, ctx: MessageContext): Promise<PolicyVersion> {
    const m = ctx.manager!;
    const saved = await this.store.put(m, req.policy, req.expectedVersion, ctx.envelope.source);
    await this.outbox.enqueue(m, subjects.evt(POLICY_AGGREGATE, saved.workloadClass, 'changed'), {
      type: 'policy.changed',
      data: saved,
      causationid: ctx.envelope.id,
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
}
