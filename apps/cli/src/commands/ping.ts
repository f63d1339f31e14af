import { isServiceName, PING_VERB, PingReplySchema, subjects, type PingReply } from '@ccm/contracts';
import { signedRequest } from '@ccm/messaging';
import { type Connection } from '../context.js';
import { usageError } from '../errors.js';

export interface PingArgs {
  service: string | undefined;
  host?: string;
  vm?: string;
  message?: string;
  timeoutMs: number;
}

/** `ccm ping <service> [--host ID | --vm ID]`: one signed round trip to a service, with its latency. */
export async function ping(conn: Connection, a: PingArgs): Promise<PingReply & { latencyMs: number }> {
  if (!a.service || !isServiceName(a.service))
    throw usageError(
      `ping needs a service name, got ${JSON.stringify(a.service ?? '')}`,
      'e.g. `ccm ping key-broker`',
    );
  let subject: string;
  if (a.service === 'host-agent') {
    if (!a.host) throw usageError('ping host-agent needs --host ID');
    subject = subjects.hostCmd(a.host, PING_VERB);
  } else if (a.service === 'guest-agent') {
    if (!a.vm) throw usageError('ping guest-agent needs --vm ID');
    subject = subjects.guestCmd(a.vm, PING_VERB);
  } else {
    subject = subjects.cmd(a.service, PING_VERB);
  }
  const started = performance.now();
  const reply = await signedRequest(
    conn.nc,
    conn.identity,
    conn.trust,
    subject,
    { message: a.message ?? '' },
    PingReplySchema,
    {
      timeoutMs: a.timeoutMs,
    },
  );
  return { ...reply, latencyMs: Math.round((performance.now() - started) * 10) / 10 };
}
