import { open, readdir, readFile, writeFile } from 'node:fs/promises';

/**
 * How many pages a container dirtied since its last pre-dump, read the way CRIU's memory tracking
 * reads them: a pre-dump clears the tasks' soft-dirty bits (`/proc/<pid>/clear_refs` 4) as it takes
 * its snapshot, so a page whose `/proc/<pid>/pagemap` entry is present (or swapped), soft-dirty and
 * anonymous (not a page of a file or of shared memory, which CRIU does not put in the pages images)
 * is one the next pre-dump sends. Counting them after a round's stream gives container-checkpoint the
 * estimate it converges on: what a round started now would carry.
 */

/** One mapping of /proc/<pid>/maps. */
export interface Vma {
  readonly start: number;
  readonly end: number;
  readonly name: string;
}

const PAGE = 4096;
const ENTRY = 8;
// Bits of a pagemap entry, in its high 32 bits (entry bit n is bit n-32 there).
const PRESENT = 1 << (63 - 32);
const SWAPPED = 1 << (62 - 32);
const FILE_OR_SHARED = 1 << (61 - 32);
const SOFT_DIRTY = 1 << (55 - 32);

/** The mappings of a maps file; the kernel's [vsyscall] page has no pagemap entry worth reading. */
export function parseMaps(text: string): Vma[] {
  const out: Vma[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
    if (!m) continue;
    const name = m[3].trim();
    if (name === '[vsyscall]') continue;
    const start = parseInt(m[1], 16);
    const end = parseInt(m[2], 16);
    if (Number.isSafeInteger(end) && end > start) out.push({ start, end, name });
  }
  return out;
}

/** The pages of a run of pagemap entries the next pre-dump would send. */
export function dirtyEntries(pagemap: Buffer): number {
  let n = 0;
  for (let off = 0; off + ENTRY <= pagemap.length; off += ENTRY) {
    const hi = pagemap.readUInt32LE(off + 4);
    if ((hi & (PRESENT | SWAPPED)) !== 0 && (hi & SOFT_DIRTY) !== 0 && (hi & FILE_OR_SHARED) === 0) n++;
  }
  return n;
}

const CHUNK_ENTRIES = 32_768;

/** Dirty pages of one process (its maps read through its pagemap, 256 KiB at a time). */
export async function processDirtyPages(pid: number | 'self', proc = '/proc'): Promise<number> {
  const vmas = parseMaps(await readFile(`${proc}/${pid}/maps`, 'utf8'));
  const f = await open(`${proc}/${pid}/pagemap`, 'r');
  try {
    const buf = Buffer.alloc(CHUNK_ENTRIES * ENTRY);
    let n = 0;
    for (const v of vmas) {
      for (let page = v.start / PAGE; page < v.end / PAGE; page += CHUNK_ENTRIES) {
        const entries = Math.min(CHUNK_ENTRIES, v.end / PAGE - page);
        const { bytesRead } = await f.read(buf, 0, entries * ENTRY, page * ENTRY);
        n += dirtyEntries(buf.subarray(0, bytesRead));
      }
    }
    return n;
  } finally {
    await f.close();
  }
}

/** A process and its descendants (through each thread's /proc/<pid>/task/<tid>/children). */
export async function processTree(pid: number, proc = '/proc'): Promise<number[]> {
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0 && out.length < 4096) {
    const p = todo.pop()!;
    if (out.includes(p)) continue;
    out.push(p);
    for (const tid of await readdir(`${proc}/${p}/task`).catch(() => [String(p)])) {
      const children = await readFile(`${proc}/${p}/task/${tid}/children`, 'utf8').catch(() => '');
      for (const c of children.split(/\s+/)) if (/^\d+$/.test(c)) todo.push(Number(c));
    }
  }
  return out;
}

/** Pages the container whose init process is `pid` dirtied since its last pre-dump. */
export async function containerDirtyPages(pid: number, proc = '/proc'): Promise<number> {
  let n = 0;
  for (const p of await processTree(pid, proc)) n += await processDirtyPages(p, proc);
  return n;
}

/**
 * Whether this kernel keeps soft-dirty bits: the agent clears its own (`clear_refs` 4), writes a fresh
 * page and reads that page's pagemap entry. A kernel built without CONFIG_MEM_SOFT_DIRTY reports no
 * page soft-dirty, and every count above would read 0.
 */
export async function softDirtyWorks(proc = '/proc'): Promise<boolean> {
  try {
    const page = Buffer.alloc(2 * PAGE);
    await writeFile(`${proc}/self/clear_refs`, '4');
    page.fill(1);
    return (await processDirtyPages('self', proc)) > 0;
  } catch {
    return false;
  }
}
