import { describe, expect, it } from 'vitest';
import { listCpio, writeCpio } from './cpio.js';

describe('writeCpio (newc)', () => {
  const archive = writeCpio([
    { kind: 'dir', path: 'bin' },
    { kind: 'file', path: '/bin/hello', data: Buffer.from('hi!'), mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
  ]);

  it('round-trips names, types, modes, sizes and device numbers', () => {
    expect(listCpio(archive)).toEqual([
      { path: 'bin', mode: 0o040755, size: 0, rdev: [0, 0] },
      { path: 'bin/hello', mode: 0o100755, size: 3, rdev: [0, 0] },
      { path: 'bin/sh', mode: 0o120777, size: 7, rdev: [0, 0] },
      { path: 'dev/console', mode: 0o020600, size: 0, rdev: [5, 1] },
    ]);
  });

  it('writes the byte layout the kernel expects: 110-byte ASCII header, name and data padded to 4', () => {
    expect(archive.toString('ascii', 0, 6)).toBe('070701');
    expect(archive.length % 4).toBe(0);
    const hello = archive.indexOf('bin/hello\0');
    expect(archive.toString('ascii', hello - 110, hello - 104)).toBe('070701');
    const data = archive.indexOf('hi!');
    expect(data % 4).toBe(0);
    expect(archive.subarray(-124).toString('ascii')).toContain('TRAILER!!!');
  });

  it('is reproducible (fixed mtimes and inode numbers)', () => {
    const again = writeCpio([{ kind: 'file', path: 'x', data: Buffer.from('1') }]);
    expect(again.equals(writeCpio([{ kind: 'file', path: 'x', data: Buffer.from('1') }]))).toBe(true);
  });

  it('rejects an empty path', () => {
    expect(() => writeCpio([{ kind: 'dir', path: '/' }])).toThrow(/empty cpio path/);
  });
});
