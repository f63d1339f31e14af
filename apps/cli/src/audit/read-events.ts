import { STREAMS } from '@ccm/contracts';
import { type StoredEvent } from '@ccm/messaging';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { type Connection } from '../context.js';
import { CliError, ExitCode } from '../errors.js';

export interface StreamRange {
  name: string;
  /** The first sequence the stream still holds (above 1: older messages are gone). */
  firstSeq: number;
  lastSeq: number;
}

const unavailable = (err: unknown) =>
  new CliError(
    ExitCode.Unavailable,
    'EVENTS_UNAVAILABLE',
    `cannot read ${STREAMS.events.name}: ${(err as Error).message}`,
    'is the stack running, and may this key read CCM_EVENTS?',
  );

/**
 * Reads CCM_EVENTS from its first message to the last one it held when asked (an ordered consumer, as
 * `--follow` does): every message with its stream sequence, subject, bytes and storage time. A stall
 * longer than `timeoutMs` between two messages is an error, never a hang.
 */
export async function readEvents(
  conn: Connection,
  timeoutMs: number,
): Promise<{ events: StoredEvent[]; stream: StreamRange }> {
  let stream: StreamRange;
  try {
    const info = await (await jetstreamManager(conn.nc)).streams.info(STREAMS.events.name);
    stream = { name: STREAMS.events.name, firstSeq: info.state.first_seq, lastSeq: info.state.last_seq };
  } catch (err) {
    throw unavailable(err);
  }
  const events: StoredEvent[] = [];
  if (stream.lastSeq === 0 || stream.lastSeq < stream.firstSeq) return { events, stream };
  let messages;
  try {
    const consumer = await jetstream(conn.nc).consumers.get(STREAMS.events.name, {
      deliver_policy: DeliverPolicy.All,
    });
    messages = await consumer.consume();
  } catch (err) {
    throw unavailable(err);
  }
  let timer: NodeJS.Timeout | undefined;
  let stalled = false;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      void messages.close();
    }, timeoutMs);
  };
  try {
    arm();
    for await (const m of messages) {
      arm();
      events.push({ streamSeq: m.seq, subject: m.subject, data: m.data, storedAt: m.time.toISOString() });
      if (m.seq >= stream.lastSeq || m.info.pending === 0) break;
    }
  } finally {
    clearTimeout(timer);
    void messages.close().catch(() => undefined);
  }
  if (stalled) {
    throw new CliError(
      ExitCode.Unavailable,
      'EVENTS_STALLED',
      `reading ${STREAMS.events.name} stalled at #${events.at(-1)?.streamSeq ?? 0} of ${stream.lastSeq}`,
      'raise --timeout-ms, or check the NATS server',
    );
  }
  return { events, stream };
}
