import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeyUnsealError } from './errors.js';
import {
  generateIdentityKey,
  identityKeyFromPem,
  identityKeyToPem,
  SEALED_KEY_BYTES,
  sealMigrationKey,
  unsealMigrationKey,
} from './key-seal.js';

const b = { migrationId: 'mig-0123456789abcdef01234567', keyId: 'mk-1' };

describe('migration key sealed to a guest identity', () => {
  const guest = generateIdentityKey();
  const key = randomBytes(32);

  it('opens only for the guest it was sealed to', () => {
    const sealed = sealMigrationKey(key, guest.publicKey, b);
    expect(sealed).toHaveLength(SEALED_KEY_BYTES);
    expect(sealed.includes(key)).toBe(false);
    expect(unsealMigrationKey(sealed, guest, b).equals(key)).toBe(true);
    expect(() => unsealMigrationKey(sealed, generateIdentityKey(), b)).toThrow(KeyUnsealError);
  });

  it('is bound to the migration and the key id', () => {
    const sealed = sealMigrationKey(key, guest.publicKey, b);
    expect(() => unsealMigrationKey(sealed, guest, { ...b, migrationId: 'mig-x' })).toThrow(
      /not sealed to this/,
    );
    expect(() => unsealMigrationKey(sealed, guest, { ...b, keyId: 'mk-2' })).toThrow(KeyUnsealError);
  });

  it.each([0, 5, 8, 40, 60, 90])('refuses a sealed key with byte %i altered', (at) => {
    const sealed = sealMigrationKey(key, guest.publicKey, b);
    sealed[at] ^= 0x80;
    expect(() => unsealMigrationKey(sealed, guest, b)).toThrow(KeyUnsealError);
  });

  it('refuses a sealed key of the wrong length', () => {
    expect(() => unsealMigrationKey(randomBytes(99), guest, b)).toThrow(/99 bytes/);
  });

  it('keeps the identity key through its PEM', () => {
    const again = identityKeyFromPem(identityKeyToPem(guest));
    expect(again.publicKey.equals(guest.publicKey)).toBe(true);
    expect(unsealMigrationKey(sealMigrationKey(key, guest.publicKey, b), again, b).equals(key)).toBe(true);
  });
});
