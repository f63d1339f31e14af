import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CcmError, ErrorCodes } from '@ccm/contracts';

/**
 * CCM's image archive: one round's CRIU image directory as one buffer for the sealed stream.
 *
 *   "CCMIMG1\n" | u32 BE header length | header (JSON: { meta, files: [{ name, size }] }) | file bytes…
 *
 * Only flat regular files (CRIU writes nothing else but the `parent` link, which the receiver makes
 * itself); names are checked, sizes must add up to the body exactly. Anything else is a typed
 * VALIDATION_FAILED, never a partial write.
 */
export const ARCHIVE_MAGIC = Buffer.from('CCMIMG1\n', 'ascii');
const MAX_HEADER = 1024 * 1024;
const MAX_FILES = 10_000;
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

export interface ArchiveFile {
  readonly name: string;
  readonly data: Buffer;
}

export interface Archive {
  readonly meta: Record<string, unknown>;
  readonly files: readonly ArchiveFile[];
}

const bad = (why: string) =>
  new CcmError(ErrorCodes.ValidationFailed, `image archive is malformed: ${why}`, { retryable: false });

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name))
    throw bad(`file name ${JSON.stringify(name)} is not allowed`);
  return name;
}

export function packArchive(a: Archive): Buffer {
  const seen = new Set<string>();
  for (const f of a.files) {
    if (seen.has(checkName(f.name))) throw bad(`file ${f.name} twice`);
    seen.add(f.name);
  }
  const head = Buffer.from(
    JSON.stringify({ meta: a.meta, files: a.files.map((f) => ({ name: f.name, size: f.data.length })) }),
    'utf8',
  );
  const len = Buffer.alloc(4);
  len.writeUInt32BE(head.length, 0);
  return Buffer.concat([ARCHIVE_MAGIC, len, head, ...a.files.map((f) => f.data)]);
}

export function unpackArchive(b: Buffer): Archive {
  if (b.length < ARCHIVE_MAGIC.length + 4 || !b.subarray(0, ARCHIVE_MAGIC.length).equals(ARCHIVE_MAGIC))
    throw bad('no CCMIMG1 magic');
  const n = b.readUInt32BE(ARCHIVE_MAGIC.length);
  const start = ARCHIVE_MAGIC.length + 4;
  if (n > MAX_HEADER || start + n > b.length) throw bad('header overruns');
  let head: unknown;
  try {
    head = JSON.parse(b.subarray(start, start + n).toString('utf8'));
  } catch {
    throw bad('header is not JSON');
  }
  const h = head as { meta?: unknown; files?: unknown };
  if (
    typeof h !== 'object' ||
    h === null ||
    typeof h.meta !== 'object' ||
    h.meta === null ||
    Array.isArray(h.meta)
  )
    throw bad('no meta');
  if (!Array.isArray(h.files) || h.files.length > MAX_FILES) throw bad('no file list');
  const files: ArchiveFile[] = [];
  const seen = new Set<string>();
  let off = start + n;
  for (const f of h.files as Array<{ name?: unknown; size?: unknown }>) {
    const name = checkName(f?.name);
    if (seen.has(name)) throw bad(`file ${name} twice`);
    seen.add(name);
    const size = f.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
      throw bad(`file ${name} has no size`);
    if (off + size > b.length) throw bad(`file ${name} overruns the archive`);
    files.push({ name, data: b.subarray(off, off + size) });
    off += size;
  }
  if (off !== b.length) throw bad(`${b.length - off} bytes after the last file`);
  return { meta: h.meta as Record<string, unknown>, files };
}

/** Reads a CRIU image directory's regular files (the `parent` link is left out: the receiver makes it). */
export async function readImageDir(dir: string): Promise<ArchiveFile[]> {
  const out: ArchiveFile[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const st = await lstat(join(dir, name));
    if (name === 'parent' && st.isSymbolicLink()) continue;
    if (!st.isFile()) throw bad(`${name} in ${dir} is not a regular file`);
    out.push({ name: checkName(name), data: await readFile(join(dir, name)) });
  }
  return out;
}

/** Writes the files into `dir` (made, must be new or empty of these names). */
export async function writeImageDir(dir: string, files: readonly ArchiveFile[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of files) await writeFile(join(dir, checkName(f.name)), f.data, { flag: 'wx' });
}
