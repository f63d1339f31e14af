import {
  inboxPrefix,
  ReplySchema,
  STREAMS,
  type Envelope,
  type Reply,
  type SignerName,
} from '@ccm/contracts';
import { type Identity, type TrustStore } from '@ccm/keys';
import { encodeEnvelope, openEnvelope, sealEnvelope, type EnvelopeFields } from '@ccm/messaging';
import { RawNatsClient } from './raw-nats.js';
import { type TestStack } from './stack.js';

/** A raw-protocol connection (no nats.js) as one identity, with its own reply inbox. */
export async function rawAs(stack: TestStack, signer: SignerName, scope?: string): Promise<RawNatsClient> {
  return RawNatsClient.connect({
    port: Number(new URL(stack.nats.url).port),
    seed: (await stack.identity(signer, scope)).natsSeed,
    inboxPrefix: inboxPrefix(signer),
  });
}

/** A signed envelope for `subject` (type = subject, as requests are), with any field overridden. */
export function sealed(
  identity: Identity,
  subject: string,
  data: unknown,
  over: Partial<EnvelopeFields<unknown>> = {},
): Envelope {
  return sealEnvelope(identity, { natssubject: subject, type: subject, data, ...over });
}

export const bytesOf = (env: Envelope | string): Buffer =>
  Buffer.from(typeof env === 'string' ? env : encodeEnvelope(env));

/** Sends a request with the raw client and opens the signed reply (bound to our inbox). */
export async function ask(
  client: RawNatsClient,
  trust: TrustStore,
  subject: string,
  payload: Uint8Array | string,
  timeoutMs = 10_000,
): Promise<{ reply: Reply; envelope: Envelope<Reply> }> {
  const msg = await client.request(subject, payload, { timeoutMs });
  const envelope = openEnvelope(msg.data, trust, ReplySchema, { subject: msg.subject });
  return { reply: envelope.data, envelope };
}

/** The error code of a reply, or `ok`. */
export const codeOf = (r: Reply): string => (r.ok ? 'ok' : r.error.code);

/** Publishes to a JetStream stream with the raw client; resolves to the server's PubAck (or throws). */
export async function publishToStream(
  client: RawNatsClient,
  subject: string,
  payload: Uint8Array | string,
  msgId?: string,
): Promise<{ stream: string; seq: number; duplicate?: boolean }> {
  const msg = await client.request(subject, payload, msgId ? { headers: { 'Nats-Msg-Id': msgId } } : {});
  const ack = JSON.parse(msg.data.toString()) as {
    stream?: string;
    seq?: number;
    duplicate?: boolean;
    error?: { description: string };
  };
  if (ack.error || !ack.stream) throw new Error(`publish to ${subject} refused: ${msg.data.toString()}`);
  return { stream: ack.stream, seq: ack.seq!, ...(ack.duplicate ? { duplicate: true } : {}) };
}

/** A parked message as CCM_DLQ holds it. */
export interface DeadLetter {
  seq: number;
  subject: string;
  headers: Record<string, string>;
  data: Buffer;
}

function parseHeaders(block: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of block.split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

/** Every message in CCM_DLQ on `subject` (a dead-letter subject), through the JetStream API. */
export async function deadLetters(client: RawNatsClient, subject: string): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  for (let seq = 1; ;) {
    const r = (await client.jsApi(`STREAM.MSG.GET.${STREAMS.deadLetters.name}`, {
      seq,
      next_by_subj: subject,
    })) as { message?: { seq: number; subject: string; hdrs?: string; data?: string } };
    if (!r.message) return out;
    const m = r.message;
    out.push({
      seq: m.seq,
      subject: m.subject,
      headers: m.hdrs ? parseHeaders(Buffer.from(m.hdrs, 'base64').toString()) : {},
      data: Buffer.from(m.data ?? '', 'base64'),
    });
    seq = m.seq + 1;
  }
}

/** Pending and unacknowledged counts of a durable consumer, through the JetStream API. */
export async function consumerBacklog(
  client: RawNatsClient,
  stream: string,
  durable: string,
): Promise<{ pending: number; ackPending: number }> {
  const info = (await client.jsApi(`CONSUMER.INFO.${stream}.${durable}`)) as {
    num_pending?: number;
    num_ack_pending?: number;
  };
  return { pending: info.num_pending ?? -1, ackPending: info.num_ack_pending ?? -1 };
}
