import {
  Body,
  Catch,
  Controller,
  HttpCode,
  HttpException,
  Inject,
  Param,
  Post,
  UseFilters,
  type ArgumentsHost,
  type ExceptionFilter,
} from '@nestjs/common';
import {
  CcmError,
  ErrorCodes,
  GetPolicyRequestSchema,
  GUEST_OWNER,
  KeyBrokerErrorCodes,
  ListPoliciesRequestSchema,
  POLICY_HTTP_VERBS,
  policyHttpAddress,
  PutPolicyRequestSchema,
  type PolicyHttpVerb,
} from '@ccm/contracts';
import { DEFAULT_ENVELOPE_MAX_SKEW_MS } from '@ccm/config';
import {
  encodeEnvelope,
  MESSAGING_OPTIONS,
  openEnvelope,
  OutboxService,
  type MessagingOptions,
} from '@ccm/messaging';
import { type Envelope } from '@ccm/contracts';
import { type z } from 'zod';
import { HttpReplays } from './http-replays.js';
import { PolicyHandlers } from './policy.handlers.js';

/** HTTP status of each typed error of this endpoint; anything else is 500 INTERNAL. */
const STATUS: Record<string, number> = {
  [ErrorCodes.ValidationFailed]: 400,
  [ErrorCodes.MalformedMessage]: 400,
  [ErrorCodes.Misaddressed]: 400,
  [ErrorCodes.SignatureMissing]: 401,
  [ErrorCodes.SignatureInvalid]: 401,
  [ErrorCodes.UnknownSigner]: 401,
  [ErrorCodes.Stale]: 401,
  [ErrorCodes.Unauthorized]: 403,
  [ErrorCodes.NotFound]: 404,
  [KeyBrokerErrorCodes.PolicyNotFound]: 404,
  [ErrorCodes.Conflict]: 409,
  [ErrorCodes.Replayed]: 409,
  [KeyBrokerErrorCodes.PolicyRejected]: 422,
};

/**
 * Every failure of the policy endpoint (registered for the whole app: a body that is not JSON fails
 * before any controller) as the typed body NATS replies carry,
 * `{ statusCode, error: { code, message, retryable, details } }`: a body that is not JSON (the
 * framework's 400) is MALFORMED_MESSAGE, an unknown path NOT_FOUND; nothing else is 500.
 */
@Catch()
export class PolicyHttpErrorFilter implements ExceptionFilter {
  catch(err: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const res = http.getResponse<{ status(code: number): { json(body: unknown): void } }>();
    const path = http.getRequest<{ url?: string }>().url ?? '';
    if (!path.startsWith('/v1/policy/') && !(err instanceof CcmError)) {
      // Other routes (health, metrics) keep the framework's answer.
      const status = err instanceof HttpException ? err.getStatus() : 500;
      res.status(status).json(err instanceof HttpException ? err.getResponse() : { statusCode: 500 });
      return;
    }
    const typed =
      err instanceof CcmError
        ? err
        : err instanceof HttpException && err.getStatus() === 400
          ? new CcmError(ErrorCodes.MalformedMessage, 'the body is not a JSON envelope', { retryable: false })
          : err instanceof HttpException && err.getStatus() === 404
            ? new CcmError(ErrorCodes.NotFound, 'no such policy verb', { retryable: false })
            : new CcmError(ErrorCodes.Internal, 'internal error', { retryable: true });
    const status = STATUS[typed.code] ?? 500;
    res.status(status).json({ statusCode: status, error: typed.toPayload() });
  }
}

const SCHEMAS: Record<PolicyHttpVerb, z.ZodType> = {
  'put-policy': PutPolicyRequestSchema,
  'get-policy': GetPolicyRequestSchema,
  'list-policies': ListPoliciesRequestSchema,
};

/**
 * The guest owner's policy management over HTTP (`POST /v1/policy/<verb>`): the body is a CCM
 * envelope signed by the guest-owner key and addressed to this verb's HTTP address
 * (`policyHttpAddress`), so the owner needs no other credential than over NATS. The envelope is
 * verified like a NATS request (known signer, signature, address, time within the allowed skew), its
 * source must be the guest owner (the operator's and every service's key are refused), and its id is
 * taken once, whichever replica gets it and across restarts (`HttpReplays`): a replay inside the
 * freshness window is REPLAYED, one after it STALE. A put also needs
 * the version it replaces, so an old put never applies twice.
 */
@Controller('v1/policy')
@UseFilters(PolicyHttpErrorFilter)
export class PolicyHttpController {
  private readonly maxSkewMs: number;

  constructor(
    private readonly handlers: PolicyHandlers,
    private readonly outbox: OutboxService,
    private readonly replays: HttpReplays,
    @Inject(MESSAGING_OPTIONS) private readonly opts: MessagingOptions,
  ) {
    this.maxSkewMs = opts.envelopeMaxSkewMs ?? DEFAULT_ENVELOPE_MAX_SKEW_MS;
  }

  @Post(':verb')
  @HttpCode(200)
  async call(@Param('verb') verb: string, @Body() body: unknown): Promise<unknown> {
    if (!(POLICY_HTTP_VERBS as readonly string[]).includes(verb)) {
      throw new CcmError(ErrorCodes.NotFound, `no policy verb ${verb}`, { retryable: false });
    }
    const v = verb as PolicyHttpVerb;
    const env = await this.open(v, body);
    switch (v) {
      case 'put-policy':
        return this.outbox.transaction((m) =>
          this.handlers.putIn(m, env.data as z.infer<typeof PutPolicyRequestSchema>, env.source, env.id),
        );
      case 'get-policy':
        return this.handlers.get(env.data as z.infer<typeof GetPolicyRequestSchema>);
      case 'list-policies':
        return this.handlers.list();
    }
  }

  /**
   * Verifies the envelope (signer, signature, address, freshness, payload) and takes its id once, in
   * Postgres: for every replica and across restarts (kept while the envelope could still be fresh).
   */
  private async open(verb: PolicyHttpVerb, body: unknown): Promise<Envelope> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new CcmError(
        ErrorCodes.MalformedMessage,
        'the body must be a signed CCM envelope (a JSON object)',
        {
          retryable: false,
        },
      );
    }
    const env = openEnvelope(encodeEnvelope(body as Envelope), this.opts.trust, SCHEMAS[verb], {
      subject: policyHttpAddress(verb),
      at: Date.now(),
      maxSkewMs: this.maxSkewMs,
    });
    if (env.source !== GUEST_OWNER) {
      throw new CcmError(
        ErrorCodes.Unauthorized,
        `${env.source} may not ${verb}: policies are the guest owner's alone`,
        { retryable: false, details: { source: env.source } },
      );
    }
    await this.replays.admit(env.id, env.source, 2 * this.maxSkewMs);
    return env;
  }
}
