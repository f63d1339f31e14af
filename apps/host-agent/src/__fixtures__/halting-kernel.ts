import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Multiboot (v1) header magic and the flag saying the header carries its own load addresses. */
const MULTIBOOT_MAGIC = 0x1badb002;
const MULTIBOOT_AOUT_KLUDGE = 1 << 16;
/** Where the image is loaded (1 MiB) and where its code starts, right after the 32-byte header. */
const LOAD_ADDRESS = 0x10_0000;
const HEADER_SIZE = 32;
/** `hlt; jmp $-1`: the guest stops its CPU and stays stopped. */
const HALT_LOOP = [0xf4, 0xeb, 0xfd];

/**
 * Writes the smallest kernel QEMU boots with `-kernel`: a multiboot image whose only code halts the CPU.
 * For tests that need a real QEMU guest to launch, measure, run and migrate, but not to do anything
 * (no guest image to build, and no TCG CPU spent booting Linux). Returns the kernel and an initrd.
 */
export async function writeHaltingKernel(dir: string): Promise<{ kernel: string; initrd: string }> {
  const image = Buffer.alloc(4096);
  image.writeUInt32LE(MULTIBOOT_MAGIC, 0);
  image.writeUInt32LE(MULTIBOOT_AOUT_KLUDGE, 4);
  image.writeUInt32LE(-(MULTIBOOT_MAGIC + MULTIBOOT_AOUT_KLUDGE) >>> 0, 8); // checksum
  image.writeUInt32LE(LOAD_ADDRESS, 12); // header_addr
  image.writeUInt32LE(LOAD_ADDRESS, 16); // load_addr
  image.writeUInt32LE(0, 20); // load_end_addr: the whole file
  image.writeUInt32LE(0, 24); // bss_end_addr: none
  image.writeUInt32LE(LOAD_ADDRESS + HEADER_SIZE, 28); // entry_addr
  image.set(HALT_LOOP, HEADER_SIZE);
  const kernel = join(dir, 'halting-kernel.bin');
  const initrd = join(dir, 'halting-initrd.bin');
  await writeFile(kernel, image);
  await writeFile(initrd, Buffer.from('an initrd the kernel never reads\n'));
  return { kernel, initrd };
}
