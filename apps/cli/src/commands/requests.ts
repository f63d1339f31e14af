import { CcmError, ErrorCodes, subjects } from '@ccm/contracts';
import { encodeEnvelope, sealEnvelope, signedRequest } from '@ccm/messaging';
import { jetstream } from '@nats-io/jetstream';
import { type z } from 'zod';
import { type Connection } from '../context.js';

/**
 * Publishes a signed intake request on `ccm.req.<kind>` to JetStream (stream CCM_REQUESTS, which the
 * stack's bootstrap creates), so it waits there while no coordinator runs. @throws CcmError UNAVAILABLE
 */
export async function queueRequest(
  conn: Connection,
  kind: 'migrate' | 'cancel',
  data: unknown,
  idempotencyKey?: string,
): Promise<void> {
  const env = sealEnvelope(conn.identity, {
    natssubject: subjects.req(kind),
    type: subjects.req(kind),
    data,
    ...(idempotencyKey ? { idempotencykey: idempotencyKey } : {}),
  });
  try {
    await jetstream(conn.nc).publish(subjects.req(kind), encodeEnvelope(env), { msgID: env.id });
  } catch (cause) {
    throw new CcmError(
      ErrorCodes.Unavailable,
      `could not queue the ${kind} request: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
}

/** One signed query to the saga-coordinator (`ccm.cmd.saga-coordinator.<verb>`), reply validated. */
export function askCoordinator<S extends z.ZodType>(
  conn: Connection,
  verb: string,
  data: unknown,
  schema: S,
  timeoutMs: number,
): Promise<z.infer<S>> {
  return signedRequest(
    conn.nc,
    conn.identity,
    conn.trust,
    subjects.cmd('saga-coordinator', verb),
    data,
    schema,
    {
      timeoutMs,
    },
  );
}
