import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * What the launcher records of each process it starts, one file per process in `<state>/launcher-pids/`: its pid,
 * the kernel's start time of that pid (so a pid reused by an unrelated process is never signalled), the
 * signal that stops it gracefully and whether it is a server (stopped after the services).
 */
export interface PidRecord {
  name: string;
  pid: number;
  startTime: string;
  stopSignal: NodeJS.Signals;
  server: boolean;
}

/**
 * The launcher's own records, apart from anything a host-agent keeps under the state dir (the demo
 * gives host-agents `<state>/run/<host>/vms`, which must outlive the launcher's stop).
 */
export const RUN_DIR = 'launcher-pids';
const file = (stateDir: string, name: string) => join(stateDir, RUN_DIR, `${name}.pid`);

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined when pid is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** True while the recorded process (that very one, not a reuse of its pid) still runs. */
export function stillRunning(r: PidRecord): boolean {
  return processStartTime(r.pid) === r.startTime;
}

export async function recordPid(stateDir: string, rec: Omit<PidRecord, 'startTime'>): Promise<void> {
  const startTime = processStartTime(rec.pid);
  if (startTime === undefined) return;
  await mkdir(join(stateDir, RUN_DIR), { recursive: true, mode: 0o700 });
  await writeFile(file(stateDir, rec.name), `${JSON.stringify({ ...rec, startTime })}\n`, { mode: 0o600 });
}

export async function forgetPid(stateDir: string, name: string): Promise<void> {
  await rm(file(stateDir, name), { force: true });
}

export async function readPidRecords(stateDir: string): Promise<PidRecord[]> {
  let names: string[];
  try {
    names = (await readdir(join(stateDir, RUN_DIR))).filter((n) => n.endsWith('.pid'));
  } catch {
    return [];
  }
  const out: PidRecord[] = [];
  for (const n of names) {
    try {
      out.push(JSON.parse(await readFile(join(stateDir, RUN_DIR, n), 'utf8')) as PidRecord);
    } catch {
      // A half-written record from a crash: nothing to act on.
    }
  }
  return out;
}

function signal(r: PidRecord, sig: NodeJS.Signals): void {
  if (!stillRunning(r)) return;
  try {
    process.kill(r.pid, sig);
  } catch {
    // Gone meanwhile.
  }
}

async function waitGone(records: PidRecord[], graceMs: number): Promise<void> {
  const deadline = Date.now() + graceMs;
  while (records.some(stillRunning) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const r of records) signal(r, 'SIGKILL');
}

/**
 * Stops every recorded process that still runs: services first with their stop signal, then the
 * servers (NATS, Postgres), each SIGKILLed after `graceMs`; then removes the records. Returns the
 * names of the processes it found running.
 */
export async function stopRecorded(stateDir: string, graceMs = 10_000): Promise<string[]> {
  const records = await readPidRecords(stateDir);
  const running = records.filter(stillRunning);
  for (const group of [running.filter((r) => !r.server), running.filter((r) => r.server)]) {
    for (const r of group) signal(r, r.stopSignal);
    await waitGone(group, graceMs);
  }
  await rm(join(stateDir, RUN_DIR), { recursive: true, force: true });
  return running.map((r) => r.name);
}
