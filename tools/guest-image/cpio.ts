/**
 * A writer for the "newc" cpio format the kernel unpacks as initramfs (Documentation/driver-api/
 * early-userspace/buffer-format.rst). Writing it here instead of running cpio(1) means no extra host
 * package, reproducible output (fixed mtimes and inode numbers) and device nodes without root.
 */

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'char'; path: string; major: number; minor: number; mode?: number };

const MAGIC = '070701';
const TRAILER = 'TRAILER!!!';
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const hex8 = (n: number): string => {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
};
const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);

function record(
  name: string,
  ino: number,
  mode: number,
  data: Buffer,
  rdev: [number, number] = [0, 0],
): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`);
  const header = [
    MAGIC,
    hex8(ino),
    hex8(mode),
    hex8(0), // uid
    hex8(0), // gid
    hex8(mode & S_IFDIR ? 2 : 1), // nlink
    hex8(0), // mtime: fixed, for reproducible images
    hex8(data.length),
    hex8(0), // devmajor
    hex8(0), // devminor
    hex8(rdev[0]),
    hex8(rdev[1]),
    hex8(nameBytes.length),
    hex8(0), // check
  ].join('');
  const head = Buffer.concat([Buffer.from(header, 'ascii'), nameBytes]);
  return [head, pad4(head.length), data, pad4(data.length)];
}

/** Encodes the entries, in order, followed by the trailer. Paths are relative (`bin/sh`, not `/bin/sh`). */
export function writeCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (!name) throw new RangeError('empty cpio path');
    switch (e.kind) {
      case 'dir':
        parts.push(...record(name, ino++, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0)));
        break;
      case 'file':
        parts.push(...record(name, ino++, S_IFREG | (e.mode ?? 0o644), e.data));
        break;
      case 'symlink':
        parts.push(...record(name, ino++, S_IFLNK | 0o777, Buffer.from(e.target)));
        break;
      case 'char':
        parts.push(...record(name, ino++, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), [e.major, e.minor]));
        break;
    }
  }
  parts.push(...record(TRAILER, 0, 0, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

/** Reads back the names, modes and sizes of a newc archive (for tests and sanity checks). */
export function listCpio(
  archive: Buffer,
): { path: string; mode: number; size: number; rdev: [number, number] }[] {
  const out: { path: string; mode: number; size: number; rdev: [number, number] }[] = [];
  let off = 0;
  for (;;) {
    const header = archive.toString('ascii', off, off + 110);
    if (!header.startsWith(MAGIC)) throw new Error(`bad cpio magic at offset ${off}`);
    const field = (i: number): number => Number.parseInt(header.slice(6 + i * 8, 14 + i * 8), 16);
    const [mode, size, rmaj, rmin, nameLen] = [field(1), field(6), field(9), field(10), field(11)];
    const path = archive.toString('utf8', off + 110, off + 110 + nameLen - 1);
    off += 110 + nameLen;
    off += (4 - (off % 4)) % 4;
    if (path === TRAILER) return out;
    out.push({ path, mode, size, rdev: [rmaj, rmin] });
    off += size;
    off += (4 - (off % 4)) % 4;
  }
}
