import { z } from 'zod';

/** `ccm.cmd.<service>.ping`: proves a service is wired to NATS, its signing key and its database. */
export const PingRequestSchema = z.object({
  /** Echoed back verbatim. */
  message: z.string().max(1000).default(''),
});
export type PingRequest = z.infer<typeof PingRequestSchema>;

export const PingReplySchema = z.object({
  service: z.string(),
  instanceId: z.string(),
  echo: z.string(),
  /** Total pings this instance answered, counted in its database (or memory when it has none). */
  count: z.number().int().nonnegative(),
  at: z.iso.datetime({ offset: true }),
});
export type PingReply = z.infer<typeof PingReplySchema>;

/** Event `ccm.evt.service.<service>.pinged`, written through the outbox with the state change. */
export const ServicePingedSchema = PingReplySchema.omit({ at: true });
export type ServicePinged = z.infer<typeof ServicePingedSchema>;

export const PING_VERB = 'ping';
export const PINGED_EVENT = 'pinged';
