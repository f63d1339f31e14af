import { lstat, mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
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
  const prefix = archivePrefix({
    meta: a.meta,
    files: a.files.map((f) => ({ name: f.name, size: f.data.length })),
  });
  return Buffer.concat([prefix, ...a.files.map((f) => f.data)]);
}

/** The archive's bytes before its files' (magic, header length, header), the names checked. */
function archivePrefix(h: ArchiveHeader): Buffer {
  const seen = new Set<string>();
  for (const f of h.files) {
    if (seen.has(checkName(f.name))) throw bad(`file ${f.name} twice`);
    seen.add(f.name);
  }
  const head = Buffer.from(JSON.stringify({ meta: h.meta, files: h.files }), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(head.length, 0);
  return Buffer.concat([ARCHIVE_MAGIC, len, head]);
}

/** An archive's header: its meta and each file's name and size, in order. */
export interface ArchiveHeader {
  readonly meta: Record<string, unknown>;
  readonly files: ReadonlyArray<{ readonly name: string; readonly size: number }>;
}

const PREFIX = ARCHIVE_MAGIC.length + 4;

/** The header's length from the archive's first PREFIX bytes (magic checked). */
function headerLength(b: Buffer): number {
  if (!b.subarray(0, ARCHIVE_MAGIC.length).equals(ARCHIVE_MAGIC)) throw bad('no CCMIMG1 magic');
  const n = b.readUInt32BE(ARCHIVE_MAGIC.length);
  if (n > MAX_HEADER) throw bad('header overruns');
  return n;
}

/** Parses and checks the JSON header: meta an object, file names allowed and once each, sizes whole. */
function parseHeader(b: Buffer): ArchiveHeader {
  let head: unknown;
  try {
    head = JSON.parse(b.toString('utf8'));
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
  const files: Array<{ name: string; size: number }> = [];
  const seen = new Set<string>();
  for (const f of h.files as Array<{ name?: unknown; size?: unknown }>) {
    const name = checkName(f?.name);
    if (seen.has(name)) throw bad(`file ${name} twice`);
    seen.add(name);
    const size = f.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
      throw bad(`file ${name} has no size`);
    files.push({ name, size });
  }
  return { meta: h.meta as Record<string, unknown>, files };
}

export function unpackArchive(b: Buffer): Archive {
  if (b.length < PREFIX) throw bad('no CCMIMG1 magic');
  const n = headerLength(b);
  if (PREFIX + n > b.length) throw bad('header overruns');
  const h = parseHeader(b.subarray(PREFIX, PREFIX + n));
  const files: ArchiveFile[] = [];
  let off = PREFIX + n;
  for (const { name, size } of h.files) {
    if (off + size > b.length) throw bad(`file ${name} overruns the archive`);
    files.push({ name, data: b.subarray(off, off + size) });
    off += size;
  }
  if (off !== b.length) throw bad(`${b.length - off} bytes after the last file`);
  return { meta: h.meta, files };
}

/** What {@link ArchiveUnpacker} found in the bytes handed to it. */
export type ArchivePiece =
  | { readonly kind: 'header'; readonly header: ArchiveHeader }
  /** Bytes of file `name`, in order; `end` when they complete it (an empty file is one empty piece). */
  | { readonly kind: 'data'; readonly name: string; readonly data: Buffer; readonly end: boolean };

/**
 * Unpacks an archive as its bytes arrive (the target, chunk by chunk), with the checks of
 * {@link unpackArchive}: the header when it is whole, then each file's bytes as they come. Anything
 * malformed (bad magic or header, a byte after the last file) throws VALIDATION_FAILED; `complete`
 * tells, at the end, that every file came exactly.
 */
export class ArchiveUnpacker {
  private head: Buffer[] = [];
  private headHeld = 0;
  private header: ArchiveHeader | undefined;
  private file = 0;
  private left = 0;

  get complete(): boolean {
    return this.header !== undefined && this.file === this.header.files.length;
  }

  push(b: Buffer): ArchivePiece[] {
    const out: ArchivePiece[] = [];
    let rest = b;
    if (!this.header) {
      this.head.push(b);
      this.headHeld += b.length;
      if (this.headHeld < PREFIX) return out;
      const all = Buffer.concat(this.head, this.headHeld);
      const n = headerLength(all);
      if (this.headHeld < PREFIX + n) {
        this.head = [all];
        return out;
      }
      this.header = parseHeader(all.subarray(PREFIX, PREFIX + n));
      this.head = [];
      rest = all.subarray(PREFIX + n);
      out.push({ kind: 'header', header: this.header });
      this.next(out);
    }
    const files = this.header.files;
    while (rest.length > 0) {
      if (this.file >= files.length) throw bad(`${rest.length} bytes after the last file`);
      const n = Math.min(this.left, rest.length);
      this.left -= n;
      out.push({
        kind: 'data',
        name: files[this.file].name,
        data: rest.subarray(0, n),
        end: this.left === 0,
      });
      rest = rest.subarray(n);
      if (this.left === 0) {
        this.file++;
        this.next(out);
      }
    }
    return out;
  }

  /** Moves to the next file with bytes, ending the empty ones on the way. */
  private next(out: ArchivePiece[]): void {
    const files = (this.header as ArchiveHeader).files;
    while (this.file < files.length && files[this.file].size === 0) {
      out.push({ kind: 'data', name: files[this.file].name, data: Buffer.alloc(0), end: true });
      this.file++;
    }
    this.left = this.file < files.length ? files[this.file].size : 0;
  }
}

/** A CRIU image directory's regular files, sorted, with their sizes (the `parent` link is left out: the receiver makes it). */
export async function listImageDir(dir: string): Promise<Array<{ name: string; size: number }>> {
  const out: Array<{ name: string; size: number }> = [];
  for (const name of (await readdir(dir)).sort()) {
    const st = await lstat(join(dir, name));
    if (name === 'parent' && st.isSymbolicLink()) continue;
    if (!st.isFile()) throw bad(`${name} in ${dir} is not a regular file`);
    out.push({ name: checkName(name), size: st.size });
  }
  return out;
}

/** Reads a CRIU image directory's regular files ({@link listImageDir}) whole. */
export async function readImageDir(dir: string): Promise<ArchiveFile[]> {
  const out: ArchiveFile[] = [];
  for (const f of await listImageDir(dir))
    out.push({ name: f.name, data: await readFile(join(dir, f.name)) });
  return out;
}

/**
 * The archive of `header.files` in `dir` as its bytes are read, file by file in pieces of at most
 * `pieceBytes` (each a buffer of its own): what {@link packArchive} would give, without the whole
 * archive in memory. A file whose size is not the listed one when read (CRIU has finished with it)
 * fails VALIDATION_FAILED.
 */
export async function* archiveStream(
  dir: string,
  header: ArchiveHeader,
  pieceBytes: number,
): AsyncGenerator<Buffer> {
  yield archivePrefix(header);
  for (const f of header.files) {
    const fh = await open(join(dir, f.name), 'r');
    try {
      for (let off = 0; off < f.size;) {
        const b = Buffer.allocUnsafe(Math.min(pieceBytes, f.size - off));
        const { bytesRead } = await fh.read(b, 0, b.length, off);
        if (bytesRead === 0) throw bad(`${f.name} in ${dir} shrank while it was read`);
        off += bytesRead;
        yield b.subarray(0, bytesRead);
      }
      if ((await fh.read(Buffer.alloc(1), 0, 1, f.size)).bytesRead !== 0)
        throw bad(`${f.name} in ${dir} grew while it was read`);
    } finally {
      await fh.close();
    }
  }
}

/** Writes the files into `dir` (made, must be new or empty of these names). */
export async function writeImageDir(dir: string, files: readonly ArchiveFile[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of files) await writeFile(join(dir, checkName(f.name)), f.data, { flag: 'wx' });
}
