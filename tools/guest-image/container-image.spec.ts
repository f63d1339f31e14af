import { describe, expect, it } from 'vitest';
import {
  ContainerGuestConfigError,
  containerGuestSpec,
  containerImageKey,
  containerKernelCommandLine,
} from './container-image.js';
import { BOOT_MODULES, guestInitScript } from './container-sources.js';
import { mirrorFromAptSources } from './debian.js';
import { guestImageKey } from './guest-image.js';
import { moduleName, parseModulesBuiltin, parseModulesDep, resolveModules } from './modules.js';
import { GuestImageBuildError } from './debian.js';

const DEP = [
  'kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko',
  'kernel/fs/jbd2/jbd2.ko:',
  'kernel/fs/mbcache.ko:',
  'kernel/lib/crc16.ko:',
  'kernel/net/netfilter/nft_ct.ko: kernel/net/netfilter/nf_tables.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/netfilter/nfnetlink.ko',
  'kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko',
  'kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko',
  'kernel/net/netfilter/nfnetlink.ko:',
  'kernel/lib/libcrc32c.ko:',
  'kernel/arch/x86/crypto/crc32c-intel.ko:',
  '',
].join('\n');

describe('kernel module resolution from modules.dep', () => {
  it('names modules as modprobe does', () => {
    expect(moduleName('kernel/arch/x86/crypto/crc32c-intel.ko')).toBe('crc32c_intel');
    expect(moduleName('kernel/fs/ext4/ext4.ko.xz')).toBe('ext4');
    expect(moduleName('crc32c-intel')).toBe('crc32c_intel');
  });

  it('returns the closure, every module after its dependencies, each once', () => {
    const { ordered } = resolveModules(parseModulesDep(DEP), ['nft_ct', 'ext4', 'nf_tables']);
    expect(new Set(ordered).size).toBe(ordered.length);
    expect(ordered).toHaveLength(9);
    const at = (m: string): number => ordered.findIndex((p) => p.endsWith(`/${m}.ko`));
    expect(at('ext4')).toBeGreaterThan(Math.max(at('crc16'), at('mbcache'), at('jbd2')));
    expect(at('nft_ct')).toBeGreaterThan(Math.max(at('nf_tables'), at('nf_conntrack'), at('nfnetlink')));
    expect(at('nf_tables')).toBeGreaterThan(at('libcrc32c'));
  });

  it('matches dashed and underscored names, and reports built-in modules instead of loading them', () => {
    const builtin = parseModulesBuiltin('kernel/drivers/block/virtio_blk.ko\nkernel/fs/ext4/ext4.ko\n');
    const sel = resolveModules(parseModulesDep(DEP), ['crc32c_intel', 'virtio-blk'], builtin);
    expect(sel.ordered).toEqual(['kernel/arch/x86/crypto/crc32c-intel.ko']);
    expect(sel.builtin).toEqual(['virtio_blk']);
  });

  it('a module the kernel does not have is a typed build error naming it', () => {
    expect(() => resolveModules(parseModulesDep(DEP), ['ext4', 'no_such_mod'])).toThrow(GuestImageBuildError);
    expect(() => resolveModules(parseModulesDep(DEP), ['no_such_mod'])).toThrow(/no_such_mod/);
  });

  it('a broken modules.dep (a dependency without a line, a cycle) is a typed build error', () => {
    expect(() => resolveModules(parseModulesDep('a.ko: b.ko\n'), ['a'])).toThrow(/b\.ko/);
    expect(() => resolveModules(parseModulesDep('a.ko: b.ko\nb.ko: a.ko\n'), ['a'])).toThrow(/cycle/);
  });
});

describe('container image key', () => {
  it('is stable, differs from the tiny guest key, and hashes the guest init', () => {
    expect(containerImageKey()).toMatch(/^container-[0-9a-f]{16}$/);
    expect(containerImageKey()).toBe(containerImageKey());
    expect(containerImageKey()).not.toContain(guestImageKey());
    expect(guestInitScript(BOOT_MODULES)).toContain(`modprobe -a ${BOOT_MODULES.join(' ')}`);
    expect(guestInitScript(['tun'])).not.toBe(guestInitScript(BOOT_MODULES));
  });
});

describe('container guest command line and QEMU arguments', () => {
  const image = { kernel: '/c/vmlinux', initrd: '/c/initramfs.cpio', rootDisk: '/c/a,b/root.ext4' };

  it('puts networking, host name, run command and power-off on the kernel command line', () => {
    expect(
      containerKernelCommandLine({
        ip: '10.213.0.2/24',
        gateway: '10.213.0.1',
        hostname: 'guest-a',
        run: '/usr/lib/ccm/agent',
        poweroff: true,
      }),
    ).toBe(
      'console=ttyS0 quiet panic=-1 ccm.ip=10.213.0.2/24 ccm.gw=10.213.0.1 ccm.hostname=guest-a ccm.run=/usr/lib/ccm/agent ccm.poweroff=1',
    );
    expect(containerKernelCommandLine()).toBe('console=ttyS0 quiet panic=-1');
    expect(containerKernelCommandLine({ runScript: '/host/smoke.sh' })).toMatch(/ ccm\.run=fw_cfg$/);
    // The secret page: reserved from the kernel and named for the init.
    expect(containerKernelCommandLine({ secretGpa: 0xf00000 })).toBe(
      'console=ttyS0 quiet panic=-1 memmap=4K$0xf00000 ccm.secret=0xf00000',
    );
  });

  it.each([
    [{ ip: '10.0.0.2' }, /ADDR\/PREFIX/],
    [{ ip: '10.0.0.256/24' }, /ADDR\/PREFIX/],
    [{ ip: '10.0.0.2/33' }, /ADDR\/PREFIX/],
    [{ ip: '10.0.0.2/24 init=/bin/sh' }, /ADDR\/PREFIX/],
    [{ gateway: '10.0.0.1' }, /gateway needs ip/],
    [{ ip: '10.0.0.2/24', gateway: 'router' }, /gateway/],
    [{ hostname: 'a b' }, /host name/],
    [{ hostname: '-x' }, /host name/],
    [{ run: 'relative/path' }, /absolute guest path/],
    [{ secretGpa: 0x1000 }, /page above 1 MiB/],
    [{ secretGpa: 0xf00010 }, /page above 1 MiB/],
    [{ run: '/bin/sh ccm.poweroff=1' }, /absolute guest path/],
  ])('rejects %o with a typed error', (opts, message) => {
    expect(() => containerKernelCommandLine(opts)).toThrow(ContainerGuestConfigError);
    expect(() => containerKernelCommandLine(opts)).toThrow(message);
  });

  it('opens the root disk read-only on virtio-blk (commas escaped), passes the run script over fw_cfg', () => {
    const spec = containerGuestSpec(image, { runScript: '/tmp/s.sh', memoryMiB: 768 });
    expect(spec).toMatchObject({ kernel: image.kernel, initrd: image.initrd, memoryMiB: 768, cpu: 'max' });
    expect(spec.extraArgs).toEqual([
      '-drive',
      'file=/c/a,,b/root.ext4,if=virtio,format=raw,readonly=on',
      '-no-reboot',
      '-fw_cfg',
      'name=opt/ccm/run,file=/tmp/s.sh',
    ]);
    expect(spec.append).toContain('ccm.run=fw_cfg');
  });

  it('adds a virtio-net device on a tap when asked, and refuses an address without one', () => {
    const spec = containerGuestSpec(image, { tap: 'ccmtap0', mac: '52:54:00:12:34:56', ip: '10.1.0.2/24' });
    expect(spec.extraArgs).toEqual(
      expect.arrayContaining([
        '-netdev',
        'tap,id=n0,ifname=ccmtap0,script=no,downscript=no',
        '-device',
        'virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56',
      ]),
    );
    expect(() => containerGuestSpec(image, { ip: '10.1.0.2/24' })).toThrow(/ip needs a tap/);
    expect(() => containerGuestSpec(image, { tap: 'tap0,script=/x' })).toThrow(ContainerGuestConfigError);
    expect(() => containerGuestSpec(image, { tap: 'tap0', mac: 'zz' })).toThrow(/MAC/);
  });
});

describe('Debian mirror from apt sources', () => {
  it('takes the main archive of deb822 sources, skipping security and updates', () => {
    const security = 'Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n';
    const main = 'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n';
    expect(mirrorFromAptSources([`${security}\n${main}`], [])).toBe('http://mirror.example/debian');
  });

  it('falls back to one-line sources, options included', () => {
    const list = [
      '# comment',
      'deb http://security.debian.org/debian-security bookworm-security main',
      'deb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian bookworm main',
    ].join('\n');
    expect(mirrorFromAptSources([], [list])).toBe('http://ftp.example/debian');
    expect(mirrorFromAptSources([], ['# nothing'])).toBeUndefined();
  });
});
