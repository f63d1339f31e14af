import { describe, expect, it } from 'vitest';
import { hex, readSevKats, readVector } from './__fixtures__/vectors.js';
import {
  SevBadMacError,
  SevInvalidLengthError,
  SevInvalidParamError,
  SevReservedBytesError,
  SevTruncatedError,
} from './errors.js';
import { SevGuid } from './guid.js';
import { openSevLaunchSecret, sealSevLaunchSecret } from './launch-secret.js';
import { decodeSevMeasurementBlob } from './measurement.js';
import {
  decodeSevPacketHeader,
  encodeSevPacketHeader,
  openSevPacket,
  sealSevPacket,
  SevPacketContext,
} from './packet.js';
import { buildSevSecretTable, parseSevSecretTable, sevDiskPassphraseEntry } from './secret-table.js';

const kats = readSevKats();
const entriesOf = (list: { guid: string; file: string }[]) =>
  list.map((s) => ({ guid: s.guid, data: readVector(s.file) }));

describe('LAUNCH_SECRET', () => {
  const withPackets = kats.launch_secret.filter((k) => k.expected_header_52_hex);
  it.each(withPackets)('KAT $name: secret table, header and payload', (k) => {
    const keys = { tek: readVector(k.tek_file!), tik: readVector(k.tik_file!) };
    const { measure } = decodeSevMeasurementBlob(hex(k.launch_measure_blob_48_hex!));
    const table = buildSevSecretTable(entriesOf(k.secrets!));
    if (k.helper_derived_plaintext_table_hex)
      expect(table.toString('hex')).toBe(k.helper_derived_plaintext_table_hex);
    const packet = sealSevLaunchSecret({ keys, measure, plaintext: table, iv: hex(k.iv_hex!) });
    expect(encodeSevPacketHeader(packet.header).toString('hex')).toBe(k.expected_header_52_hex);
    expect(packet.ciphertext.toString('hex')).toBe(k.expected_payload_hex);
    expect(Buffer.from(packet.qmp['packet-header'], 'base64').toString('hex')).toBe(k.expected_header_52_hex);
    expect(Buffer.from(packet.qmp.secret, 'base64').toString('hex')).toBe(k.expected_payload_hex);
    // the firmware side opens it and the guest reads the same entries back
    const header = decodeSevPacketHeader(hex(k.expected_header_52_hex!));
    const plain = openSevLaunchSecret({ keys, measure, header, ciphertext: hex(k.expected_payload_hex!) });
    expect(plain.equals(table)).toBe(true);
    expect(parseSevSecretTable(plain).map((e) => e.guid)).toEqual(k.secrets!.map((s) => s.guid));
  });

  const sizeKat = kats.launch_secret.find((k) => k.expected_payload_len)!;
  it.each(['secrets_a', 'secrets_b'] as const)('KAT size limit (%s): payload is 16384 bytes', (which) => {
    const table = buildSevSecretTable(entriesOf(sizeKat[which]!), { maxSize: 16384 });
    expect(table.length).toBe(sizeKat.expected_payload_len);
    expect(table.length % 16).toBe(0);
    expect(() =>
      buildSevSecretTable(
        [...entriesOf(sizeKat[which]!), { guid: SevGuid.DISK_PASSPHRASE, data: Buffer.alloc(1) }],
        { maxSize: 16384 },
      ),
    ).toThrow(SevInvalidLengthError);
  });

  const keys = { tek: Buffer.alloc(16, 1), tik: Buffer.alloc(16, 2) };
  const measure = Buffer.alloc(32, 3);
  const table = buildSevSecretTable([sevDiskPassphraseEntry('hunter2')]);

  it('a packet bound to another MEASURE, a flipped ciphertext or header bit is refused', () => {
    const packet = sealSevLaunchSecret({ keys, measure, plaintext: table });
    expect(() =>
      openSevLaunchSecret({
        keys,
        measure: Buffer.alloc(32, 4),
        header: packet.header,
        ciphertext: packet.ciphertext,
      }),
    ).toThrow(SevBadMacError);
    const ct = Buffer.from(packet.ciphertext);
    ct[0] ^= 1;
    expect(() => openSevLaunchSecret({ keys, measure, header: packet.header, ciphertext: ct })).toThrow(
      SevBadMacError,
    );
    const iv = Uint8Array.from(packet.header.iv);
    iv[15] ^= 1;
    expect(() =>
      openSevLaunchSecret({ keys, measure, header: { ...packet.header, iv }, ciphertext: packet.ciphertext }),
    ).toThrow(SevBadMacError);
  });

  it('API < 0.17 leaves MEASURE out of the MAC', () => {
    const platform = { apiMajor: 0, apiMinor: 16 };
    const packet = sealSevLaunchSecret({ keys, measure, plaintext: table, platform });
    const other = Buffer.alloc(32, 9);
    expect(
      openSevLaunchSecret({
        keys,
        measure: other,
        header: packet.header,
        ciphertext: packet.ciphertext,
        platform,
      }).equals(table),
    ).toBe(true);
  });

  it('transport packets (SEND/RECEIVE_UPDATE_DATA layout) round-trip and do not open as LAUNCH_SECRET', () => {
    const plaintext = Buffer.alloc(4096, 0xab);
    const iv = Buffer.alloc(16, 7);
    const packet = sealSevPacket({ context: SevPacketContext.TRANSPORT, keys, iv, plaintext });
    expect(openSevPacket({ context: SevPacketContext.TRANSPORT, keys, ...packet }).equals(plaintext)).toBe(
      true,
    );
    expect(() => openSevPacket({ context: SevPacketContext.LAUNCH_SECRET, keys, ...packet })).toThrow(
      SevBadMacError,
    );
    expect(() =>
      openSevPacket({ context: SevPacketContext.TRANSPORT, keys, ...packet, guestLength: 1 }),
    ).toThrow(SevBadMacError);
  });

  it('packet header: lengths and reserved flag bits are checked', () => {
    const bytes = encodeSevPacketHeader(sealSevLaunchSecret({ keys, measure, plaintext: table }).header);
    expect(bytes.length).toBe(52);
    expect(() => decodeSevPacketHeader(bytes.subarray(0, 51))).toThrow(SevTruncatedError);
    const flagged = Buffer.from(bytes);
    flagged[0] = 0x02;
    expect(() => decodeSevPacketHeader(flagged)).toThrow(SevReservedBytesError);
    expect(() => sealSevLaunchSecret({ keys, measure: Buffer.alloc(31), plaintext: table })).toThrow(
      SevInvalidParamError,
    );
  });
});

describe('EFI secret table', () => {
  it('grub convention: NUL-terminated passphrase, length counts the padding; both parse the same', () => {
    const grub = buildSevSecretTable([sevDiskPassphraseEntry('secret', { nulTerminated: true })], {
      convention: 'grub',
    });
    expect(grub.readUInt32LE(16)).toBe(grub.length);
    expect(parseSevSecretTable(grub)).toEqual([
      { guid: SevGuid.DISK_PASSPHRASE, data: Uint8Array.from(Buffer.from('secret\0')) },
    ]);
    const sevctl = buildSevSecretTable([sevDiskPassphraseEntry('secret')]);
    expect(sevctl.readUInt32LE(16)).toBe(20 + 20 + 6);
  });

  it('rejects a bad header GUID, a bad length, a bad entry length and non-zero padding', () => {
    const table = buildSevSecretTable([sevDiskPassphraseEntry('abc')]);
    const badGuid = Buffer.from(table);
    badGuid[0] ^= 1;
    expect(() => parseSevSecretTable(badGuid)).toThrow(SevInvalidParamError);
    const badLen = Buffer.from(table);
    badLen.writeUInt32LE(table.length + 1, 16);
    expect(() => parseSevSecretTable(badLen)).toThrow(SevInvalidLengthError);
    const badEntry = Buffer.from(table);
    badEntry.writeUInt32LE(5, 36);
    expect(() => parseSevSecretTable(badEntry)).toThrow(SevInvalidLengthError);
    const badPad = Buffer.from(table);
    badPad[table.length - 1] = 1;
    expect(() => parseSevSecretTable(badPad)).toThrow(SevReservedBytesError);
    expect(() => buildSevSecretTable([])).toThrow(SevInvalidParamError);
  });
});
