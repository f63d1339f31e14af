import { describe, expect, it } from 'vitest';
import { testImage } from '../__fixtures__/bytes.js';
import { GuestMemory, PAGE_SIZE } from './memory.js';
import { MemoryEncryptionKey } from './memory-cipher.js';

const memory = (pages = 16, vek = MemoryEncryptionKey.generate()) => new GuestMemory(pages * PAGE_SIZE, vek);

describe('guest memory model', () => {
  it('private bytes read back as plaintext in the private view and as ciphertext in the physical view', () => {
    const m = memory();
    const data = testImage(3 * PAGE_SIZE);
    m.writePrivate(PAGE_SIZE - 32, data); // crosses page boundaries
    expect(m.readPrivate(PAGE_SIZE - 32, data.length)).toEqual(data);
    const physical = m.readPhysical(PAGE_SIZE - 32, data.length);
    expect(physical.equals(data)).toBe(false);
    expect(m.isPrivate(PAGE_SIZE - 32, data.length)).toBe(true);
    expect(m.isPrivate(0, 16)).toBe(false);
  });

  it('equal plaintext at two addresses, or under two VEKs, gives unrelated ciphertext', () => {
    const m = memory();
    const block = Buffer.alloc(16, 0x5a);
    m.writePrivate(0, block);
    m.writePrivate(16, block);
    expect(m.readPhysical(0, 16).equals(m.readPhysical(16, 16))).toBe(false);
    const other = memory();
    other.writePrivate(0, block);
    expect(other.readPhysical(0, 16).equals(m.readPhysical(0, 16))).toBe(false);
  });

  it('a host write into private memory garbles exactly the 16-byte blocks it touches', () => {
    const m = memory();
    const data = testImage(64);
    m.writePrivate(0, data);
    m.writePhysical(20, Buffer.from([1, 2, 3]));
    const seen = m.readPrivate(0, 64);
    expect(seen.subarray(0, 16)).toEqual(data.subarray(0, 16));
    expect(seen.subarray(16, 32).equals(data.subarray(16, 32))).toBe(false);
    expect(seen.subarray(32)).toEqual(data.subarray(32));
    // the physical bytes are what the host wrote, over the ciphertext of the rest of the block
    const physical = m.readPhysical(16, 16);
    expect([...physical.subarray(4, 7)]).toEqual([1, 2, 3]);
  });

  it('shared bytes are seen as written by the host; read through the C-bit they are garbage', () => {
    const m = memory();
    const text = Buffer.from('a buffer shared with the host..!');
    m.writePhysical(100, text);
    expect(m.readPhysical(100, text.length)).toEqual(text);
    expect(m.readPrivate(100, text.length).equals(text)).toBe(false);
    expect(m.readPhysical(5 * PAGE_SIZE, 32)).toEqual(Buffer.alloc(32)); // never written: zeros
  });

  it('partial-block private writes keep the rest of the block', () => {
    const m = memory();
    m.writePrivate(0, Buffer.alloc(32, 0xee));
    m.writePrivate(5, Buffer.from('xyz'));
    const seen = m.readPrivate(0, 32);
    expect(seen.subarray(5, 8).toString()).toBe('xyz');
    expect(seen[4]).toBe(0xee);
    expect(seen[8]).toBe(0xee);
  });

  it('encryptInPlace returns the loaded bytes and makes them private; twice gives the guest ciphertext', () => {
    const m = memory();
    const image = testImage(PAGE_SIZE);
    m.writePhysical(0, image);
    expect(m.encryptInPlace(0, PAGE_SIZE)).toEqual(image);
    expect(m.readPrivate(0, PAGE_SIZE)).toEqual(image);
    const ciphertext = m.readPhysical(0, PAGE_SIZE);
    expect(m.encryptInPlace(0, PAGE_SIZE)).toEqual(ciphertext);
    expect(m.readPrivate(0, PAGE_SIZE)).toEqual(ciphertext);
  });

  it('bounds', () => {
    const m = memory(1);
    expect(m.contains(0, PAGE_SIZE)).toBe(true);
    expect(m.contains(1, PAGE_SIZE)).toBe(false);
    expect(m.contains(-1, 1)).toBe(false);
    expect(m.contains(0.5, 1)).toBe(false);
  });
});
