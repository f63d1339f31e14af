import type { QmpClient } from './client.js';
import { FINAL_MIGRATION_STATUSES, type MigrationInfo, type MigrateSetParametersArgs } from './commands.js';
import { QmpMigrationError } from './errors.js';
import type { QmpEvent } from './events.js';

export const DEFAULT_MIGRATION_POLL_MS = 50;
export const DEFAULT_MIGRATION_TIMEOUT_MS = 10 * 60_000;
/** How long to wait for the source to reach `postmigrate` before re-reading the final figures. */
export const POSTMIGRATE_SETTLE_TIMEOUT_MS = 2_000;

export interface MigrationSetup {
  /** Migration URI as QEMU takes it, e.g. `tcp:127.0.0.1:4444`. */
  uri: string;
  /** Target downtime for the stop-and-copy phase (QEMU `downtime-limit`). */
  downtimeLimitMs?: number;
  /** Bandwidth cap (QEMU `max-bandwidth`). */
  maxBandwidthBytesPerSec?: number;
  /** Extra migration capabilities for the source; `events` is always on. */
  capabilities?: Record<string, boolean>;
  /** When given, the destination's `events` capability is switched on too, so both ends report MIGRATION. */
  destination?: QmpClient;
}

export interface AwaitMigrationOptions {
  pollIntervalMs?: number;
  timeoutMs?: number;
  /** Called with every query-migrate result while the migration runs. */
  onProgress?: (info: MigrationInfo) => void;
}

/** The figures CCM reports for a migration, in plain units. Missing fields read as 0. */
export interface MigrationFigures {
  status: string;
  totalTimeMs: number;
  downtimeMs: number;
  setupTimeMs: number;
  transferredBytes: number;
  remainingBytes: number;
  /** RAM passes (`dirty-sync-count`; equals the last MIGRATION_PASS). */
  passes: number;
  mbps: number;
}

export interface TimedEvent {
  /** Milliseconds after the `migrate` command was sent. */
  atMs: number;
  side: 'source' | 'destination';
  event: QmpEvent;
}

export interface MigrationOutcome {
  /** The last query-migrate answer (re-read after `postmigrate` when completed). */
  info: MigrationInfo;
  figures: MigrationFigures;
  /** From the `migrate` command to the terminal status seen by polling. */
  wallMs: number;
  events: TimedEvent[];
}

export function migrationFigures(info: MigrationInfo): MigrationFigures {
  return {
    status: info.status ?? 'none',
    totalTimeMs: info['total-time'] ?? 0,
    downtimeMs: info.downtime ?? 0,
    setupTimeMs: info['setup-time'] ?? 0,
    transferredBytes: info.ram?.transferred ?? 0,
    remainingBytes: info.ram?.remaining ?? 0,
    passes: info.ram?.['dirty-sync-count'] ?? 0,
    mbps: info.ram?.mbps ?? 0,
  };
}

/** Sets capabilities (always `events`) and parameters on the source (and `events` on the destination). */
export async function configureMigration(
  source: QmpClient,
  setup: Omit<MigrationSetup, 'uri'>,
): Promise<void> {
  const caps = { ...setup.capabilities, events: true };
  await source.execute('migrate-set-capabilities', {
    capabilities: Object.entries(caps).map(([capability, state]) => ({ capability, state })),
  });
  await setup.destination?.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'events', state: true }],
  });
  const params: MigrateSetParametersArgs = {};
  if (setup.downtimeLimitMs !== undefined) params['downtime-limit'] = setup.downtimeLimitMs;
  if (setup.maxBandwidthBytesPerSec !== undefined) params['max-bandwidth'] = setup.maxBandwidthBytesPerSec;
  if (Object.keys(params).length) await source.execute('migrate-set-parameters', params);
}

/**
 * Polls query-migrate until the migration reaches completed, failed or cancelled, and returns the last
 * answer. On completion it waits for the source to report `postmigrate` and reads again, because QEMU 7.2
 * can report total-time and downtime as 0 in the first `completed` answer.
 */
export async function awaitMigrationEnd(
  source: QmpClient,
  opts: AwaitMigrationOptions = {},
): Promise<MigrationInfo> {
  const poll = opts.pollIntervalMs ?? DEFAULT_MIGRATION_POLL_MS;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_MIGRATION_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await source.execute('query-migrate');
    opts.onProgress?.(info);
    if (info.status && FINAL_MIGRATION_STATUSES.has(info.status)) {
      return info.status === 'completed' ? settleCompleted(source, info) : info;
    }
    if (Date.now() > deadline) {
      throw new QmpMigrationError(info.status ?? 'none', `did not finish within ${timeoutMs} ms`);
    }
    await sleep(poll);
  }
}

async function settleCompleted(source: QmpClient, first: MigrationInfo): Promise<MigrationInfo> {
  const deadline = Date.now() + POSTMIGRATE_SETTLE_TIMEOUT_MS;
  let info = first;
  while (Date.now() < deadline) {
    const st = await source.execute('query-status');
    if (st.status === 'postmigrate') {
      info = await source.execute('query-migrate');
      if ((info['total-time'] ?? 0) > 0) return info;
    }
    await sleep(25);
  }
  return info;
}

/**
 * Runs one live migration with the bare QMP client: configure, `migrate`, wait for the end. Records both
 * ends' events. Throws {@link QmpMigrationError} when it ends in anything but `completed`.
 */
export async function driveMigration(
  source: QmpClient,
  setup: MigrationSetup,
  opts: AwaitMigrationOptions = {},
): Promise<MigrationOutcome> {
  await configureMigration(source, setup);
  const events: TimedEvent[] = [];
  let t0 = Date.now();
  const offs = [source.onEvent((event) => events.push({ atMs: Date.now() - t0, side: 'source', event }))];
  if (setup.destination) {
    offs.push(
      setup.destination.onEvent((event) =>
        events.push({ atMs: Date.now() - t0, side: 'destination', event }),
      ),
    );
  }
  try {
    t0 = Date.now();
    await source.execute('migrate', { uri: setup.uri });
    let endAt: number | undefined;
    const info = await awaitMigrationEnd(source, {
      ...opts,
      onProgress: (i) => {
        if (endAt === undefined && i.status && FINAL_MIGRATION_STATUSES.has(i.status)) endAt = Date.now();
        opts.onProgress?.(i);
      },
    });
    const wallMs = (endAt ?? Date.now()) - t0;
    if (info.status !== 'completed') throw new QmpMigrationError(info.status ?? 'none', info['error-desc']);
    return { info, figures: migrationFigures(info), wallMs, events };
  } finally {
    for (const off of offs) off();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
