import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/** Granule of memory encryption: one AES block. */
export const MEMORY_BLOCK_SIZE = 16;
/** Size of a VEK's key material: the AES key and the tweak key. */
export const VEK_SIZE = 32;

function ecb(encrypt: boolean, key: Uint8Array, data: Buffer): Buffer {
  const c = encrypt ? createCipheriv('aes-128-ecb', key, null) : createDecipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

function xorInto(target: Buffer, mask: Buffer): void {
  for (let i = 0; i < target.length; i++) target[i] ^= mask[i];
}

/**
 * A guest's memory encryption key (VEK) and the cipher the memory controller applies with it. Real
 * parts encrypt each 16-byte block with AES keyed by the VEK and tweaked by the block's physical
 * address, so equal plaintext at two addresses gives unrelated ciphertext and a host write garbles the
 * whole block the guest reads back. The model uses XEX: `C = AES(K1, P ⊕ T) ⊕ T` with
 * `T = AES(K2, LE128(address))`. The key never leaves the firmware: there is no accessor for it.
 */
export class MemoryEncryptionKey {
  readonly #k1: Buffer;
  readonly #k2: Buffer;

  private constructor(k1: Buffer, k2: Buffer) {
    this.#k1 = k1;
    this.#k2 = k2;
  }

  /** A fresh random VEK (LAUNCH_START, RECEIVE_START, SNP_LAUNCH_START). */
  static generate(): MemoryEncryptionKey {
    return new MemoryEncryptionKey(randomBytes(16), randomBytes(16));
  }

  /**
   * The key material, only for sealing a guest context under the chip's context key (`exportGuest`):
   * the VEK leaves the firmware in no other form.
   */
  sealableBytes(): Buffer {
    return Buffer.concat([this.#k1, this.#k2]);
  }

  /** The VEK of an imported guest context ({@link sealableBytes} after the seal was checked). */
  static fromSealedBytes(bytes: Uint8Array): MemoryEncryptionKey {
    if (bytes.length !== VEK_SIZE) throw new RangeError(`a VEK is ${VEK_SIZE} bytes, got ${bytes.length}`);
    return new MemoryEncryptionKey(Buffer.from(bytes.subarray(0, 16)), Buffer.from(bytes.subarray(16)));
  }

  #tweaks(address: number, length: number): Buffer {
    const blocks = Buffer.alloc(length);
    for (let off = 0; off < length; off += MEMORY_BLOCK_SIZE) {
      const a = address + off;
      blocks.writeUInt32LE(a % 0x1_0000_0000, off);
      blocks.writeUInt32LE(Math.floor(a / 0x1_0000_0000), off + 4);
    }
    return ecb(true, this.#k2, blocks);
  }

  /** What the host sees for `plaintext` stored at `address` (16-byte aligned, whole blocks). */
  encrypt(address: number, plaintext: Uint8Array): Buffer {
    const t = this.#tweaks(address, plaintext.length);
    const x = Buffer.from(plaintext);
    xorInto(x, t);
    const c = ecb(true, this.#k1, x);
    xorInto(c, t);
    return c;
  }

  /** What the guest reads (with the C-bit set) from physical bytes `ciphertext` at `address`. */
  decrypt(address: number, ciphertext: Uint8Array): Buffer {
    const t = this.#tweaks(address, ciphertext.length);
    const x = Buffer.from(ciphertext);
    xorInto(x, t);
    const p = ecb(false, this.#k1, x);
    xorInto(p, t);
    return p;
  }
}
