import { describe, expect, it } from 'vitest';
import { readVector } from './__fixtures__/vectors.js';
import { SevFirmwareImageError, SevInvalidParamError } from './errors.js';
import { SevGuid, sevGuidFromBytes, sevGuidToBytes } from './guid.js';
import { findOvmfSevInfo, parseOvmfFooterTable } from './ovmf.js';

const SEVCTL_OVMF = 'sev/kat/sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9';

describe('EFI GUIDs (mixed-endian)', () => {
  it('encodes the secret-table and passphrase GUIDs as the spec lists their bytes', () => {
    expect(sevGuidToBytes(SevGuid.EFI_SECRET_TABLE).toString('hex')).toBe('42f5741edd71664d963eef4287ff173b');
    expect(sevGuidToBytes(SevGuid.DISK_PASSPHRASE).toString('hex')).toBe('e5696873f084734992ec06879ce3da0b');
    expect(sevGuidFromBytes(sevGuidToBytes(SevGuid.HASH_TABLE_KERNEL))).toBe(SevGuid.HASH_TABLE_KERNEL);
    expect(() => sevGuidToBytes('not-a-guid')).toThrow(SevInvalidParamError);
  });
});

describe('OVMF footer GUID table', () => {
  it('sevctl RHEL 9 OVMF: SEV-ES reset block, secret area, hashes table', () => {
    const image = readVector(SEVCTL_OVMF);
    const guids = parseOvmfFooterTable(image).map((e) => e.guid);
    expect(guids).toEqual(
      expect.arrayContaining([
        SevGuid.SEV_ES_RESET_BLOCK,
        SevGuid.SEV_SECRET_AREA,
        SevGuid.SEV_HASH_TABLE_AREA,
      ]),
    );
    expect(findOvmfSevInfo(image)).toEqual({
      sevEsResetAddress: 0x80b004,
      secretArea: { base: 0x80c000, size: 0xc00 },
      hashesTable: { base: 0x80cc00, size: 0x400 },
    });
  });

  it('virtee AmdSev build lists the SEV metadata entry as well; OvmfX64 has empty areas', () => {
    const amdSev = parseOvmfFooterTable(readVector('sev/kat/virtee-ovmf/ovmf_AmdSev_suffix.bin')).map(
      (e) => e.guid,
    );
    expect(amdSev).toContain(SevGuid.SEV_METADATA);
    const x64 = findOvmfSevInfo(readVector('sev/kat/virtee-ovmf/ovmf_OvmfX64_suffix.bin'));
    expect(x64.hashesTable).toEqual({ base: 0, size: 0 });
  });

  it('an image without the footer has no entries; a corrupt size is refused', () => {
    expect(parseOvmfFooterTable(Buffer.alloc(4096))).toEqual([]);
    expect(parseOvmfFooterTable(Buffer.alloc(8))).toEqual([]);
    const image = Buffer.from(readVector(SEVCTL_OVMF));
    image.writeUInt16LE(0x11, image.length - 0x32);
    expect(() => parseOvmfFooterTable(image)).toThrow(SevFirmwareImageError);
    const entry = Buffer.from(readVector(SEVCTL_OVMF));
    entry.writeUInt16LE(3, entry.length - 0x32 - 18);
    expect(() => parseOvmfFooterTable(entry)).toThrow(SevFirmwareImageError);
  });
});
