import { describe, expect, it } from 'vitest';
import { chooseQemuBinary, parseQemuVersion } from './qemu-binary.js';

describe('the QEMU binary CCM runs', () => {
  it.each([
    ['QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)', '10.0.13'],
    ['QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)', '7.2.22'],
    ['QEMU emulator version 9.1', '9.1'],
    ['qemu-system-x86_64: not a version banner', undefined],
  ])('reads the version from %j', (banner, version) => {
    expect(parseQemuVersion(banner)).toBe(version);
  });

  it('lets the operator override the choice, explicitly or with CCM_QEMU_BIN', () => {
    expect(chooseQemuBinary('/opt/qemu/bin/qemu-system-x86_64', {})).toMatchObject({
      binary: '/opt/qemu/bin/qemu-system-x86_64',
      source: 'env',
    });
    expect(chooseQemuBinary(undefined, { CCM_QEMU_BIN: ' /usr/bin/qemu-system-x86_64 ' })).toMatchObject({
      binary: '/usr/bin/qemu-system-x86_64',
      source: 'env',
      reason: 'set by CCM_QEMU_BIN',
    });
  });

  it("otherwise prefers CCM's trixie wrapper when its rootfs is built, else the system QEMU", () => {
    const c = chooseQemuBinary(undefined, {});
    if (c.source === 'ccm-trixie') {
      expect(c.binary).toMatch(/tools\/trixie\/qemu-system-x86_64$/);
      expect(c.rootfs).toBeTruthy();
    } else {
      expect(c).toMatchObject({ source: 'path', binary: 'qemu-system-x86_64' });
    }
  });
});
