import { describe, expect, it } from 'vitest';
import { QemuConfigError } from './errors.js';
import { buildQemuArgs } from './qemu-args.js';

const paths = { qmpSocket: '/run/a/qmp.sock', pidfile: '/run/a/qemu.pid', serialLog: '/run/a/serial.log' };

/** The value following `flag` in argv. */
const after = (argv: string[], flag: string): string | undefined => argv[argv.indexOf(flag) + 1];

describe('buildQemuArgs', () => {
  it('builds a headless TCG command line with QMP, pidfile and serial log', () => {
    const argv = buildQemuArgs(
      { kernel: '/img/vmlinux', initrd: '/img/initrd', append: 'console=ttyS0' },
      'tcg',
      paths,
      {
        name: 'src',
      },
    );
    expect(argv).toEqual([
      '-name', 'src', '-nodefaults', '-no-user-config', '-display', 'none', '-accel', 'tcg', '-m', '512', '-smp', '1',
      '-kernel', '/img/vmlinux', '-initrd', '/img/initrd', '-append', 'console=ttyS0', '-serial', 'file:/run/a/serial.log',
      '-qmp', 'unix:/run/a/qmp.sock,server=on,wait=off', '-pidfile', '/run/a/qemu.pid',
    ]); // prettier-ignore
  });

  it('uses -cpu host under KVM unless a model is given, and adds -incoming for a destination', () => {
    expect(after(buildQemuArgs({ kernel: 'k' }, 'kvm', paths), '-cpu')).toBe('host');
    expect(after(buildQemuArgs({ kernel: 'k', cpu: 'max' }, 'tcg', paths), '-cpu')).toBe('max');
    expect(buildQemuArgs({ kernel: 'k' }, 'tcg', paths)).not.toContain('-cpu');
    const dst = buildQemuArgs({ kernel: 'k', extraArgs: ['-S'] }, 'tcg', paths, {
      incoming: 'tcp:127.0.0.1:4444',
    });
    expect(dst.slice(-3)).toEqual(['-incoming', 'tcp:127.0.0.1:4444', '-S']);
  });

  it('doubles commas in option values and sends the serial port nowhere without a log', () => {
    const argv = buildQemuArgs({ kernel: 'k' }, 'tcg', {
      ...paths,
      qmpSocket: '/a,b/q.sock',
      serialLog: undefined,
    });
    expect(after(argv, '-qmp')).toBe('unix:/a,,b/q.sock,server=on,wait=off');
    expect(after(argv, '-serial')).toBe('none');
  });

  it.each([
    [{ kernel: 'k', memoryMiB: 0 }, /memoryMiB/],
    [{ kernel: 'k', memoryMiB: 1.5 }, /memoryMiB/],
    [{ kernel: 'k', cpus: 0 }, /cpus/],
    [{ kernel: '' }, /kernel/],
  ])('rejects %o', (spec, message) => {
    expect(() => buildQemuArgs(spec, 'tcg', paths)).toThrow(QemuConfigError);
    expect(() => buildQemuArgs(spec, 'tcg', paths)).toThrow(message);
  });
});
