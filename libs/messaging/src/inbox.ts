import { CcmError, ErrorCodes, type Reply } from '@ccm/contracts';
import { type DataSource, type EntityManager } from 'typeorm';

/**
 * Idempotent command execution. The first message with a key inserts the inbox row, runs the handler
 * in the same transaction and stores its reply; every later message with that key (also one arriving
 * while the first still runs: it waits on the row lock) gets the stored reply without acting again.
 * A handler failure that a retry could fix rolls everything back, so the retry acts.
 */
export class Inbox {
  constructor(
    private readonly ds: DataSource,
    private readonly schema: string,
  ) {}

  async run(
    key: string,
    subject: string,
    handler: (manager: EntityManager) => Promise<unknown>,
  ): Promise<Reply> {
    const t = `"${this.schema}".inbox`;
    return this.ds.transaction(async (manager) => {
      const claimed = await manager.query<unknown[]>(
        `INSERT INTO ${t} (idempotency_key, subject) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING idempotency_key`,
        [key, subject],
      );
      if (claimed.length === 0) {
        const rows = await manager.query<
          Array<{
            subject: string;
            reply: Reply | null;
          }>
        >(`SELECT subject, reply FROM ${t} WHERE idempotency_key = $1`, [key]);
        const row = rows[0];
        if (!row?.reply)
          throw new CcmError(ErrorCodes.Conflict, `command ${key} is still being handled`, {
            retryable: true,
          });
        if (row.subject !== subject) {
          throw new CcmError(
            ErrorCodes.Conflict,
            `idempotency key ${key} was already used for ${row.subject}`,
            { retryable: false },
          );
        }
        return row.reply;
      }
      await manager.query('SAVEPOINT ccm_handler');
      let reply: Reply;
      try {
        reply = { ok: true, result: (await handler(manager)) ?? null };
      } catch (err) {
        // A definite, non-retryable refusal is an answer too: store it (without the handler's partial effects).
        if (!(err instanceof CcmError) || err.retryable) throw err;
        await manager.query('ROLLBACK TO SAVEPOINT ccm_handler');
        reply = { ok: false, error: err.toPayload() };
      }
      await manager.query(`UPDATE ${t} SET reply = $2 WHERE idempotency_key = $1`, [
        key,
        JSON.stringify(reply),
      ]);
      return reply;
    });
  }
}
