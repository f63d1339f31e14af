import { createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SevStateStoreError } from '../errors.js';

/**
 * Files of a persistent state directory (a platform's or a lab's). Every write goes to a temporary file
 * that is renamed into place, so a crash leaves either the old or the new file, never half of one.
 * Files holding private keys are created 0600 and the directory 0700.
 */
export class StateFiles {
  constructor(readonly dir: string) {}

  /** Creates the directory (0700) if needed. */
  ensureDir(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  exists(name: string): boolean {
    return existsSync(this.path(name));
  }

  readBytes(name: string): Buffer {
    const path = this.path(name);
    try {
      return readFileSync(path);
    } catch (cause) {
      throw new SevStateStoreError(path, 'cannot be read', { cause });
    }
  }

  readText(name: string): string {
    return this.readBytes(name).toString('utf8');
  }

  /** Parses a JSON file and hands it to `parse`, which throws on a wrong shape. */
  readJson<T>(name: string, parse: (value: unknown) => T): T {
    const path = this.path(name);
    try {
      return parse(JSON.parse(this.readText(name)));
    } catch (cause) {
      if (cause instanceof SevStateStoreError) throw cause;
      throw new SevStateStoreError(path, 'is not a valid state file', { cause });
    }
  }

  /** Decodes a file with `decode`; any failure names the file (what it should have been). */
  readDecoded<T>(name: string, decode: (bytes: Buffer) => T, what = 'a valid certificate'): T {
    const bytes = this.readBytes(name);
    try {
      return decode(bytes);
    } catch (cause) {
      throw new SevStateStoreError(this.path(name), `is not ${what}`, { cause });
    }
  }

  /** A PKCS#8 PEM private key. */
  readPrivateKey(name: string): KeyObject {
    return this.readDecoded(name, (bytes) => createPrivateKey(bytes.toString('utf8')), 'a PEM private key');
  }

  /** Atomically replaces `name`; `secret` files get mode 0600. */
  write(name: string, data: string | Uint8Array, options: { readonly secret?: boolean } = {}): void {
    const path = this.path(name);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, data, { mode: options.secret ? 0o600 : 0o644 });
      renameSync(tmp, path);
    } catch (cause) {
      throw new SevStateStoreError(path, 'cannot be written', { cause });
    }
  }

  writeJson(name: string, value: unknown, options: { readonly secret?: boolean } = {}): void {
    this.write(name, `${JSON.stringify(value, null, 2)}\n`, options);
  }
}

/** PKCS#8 PEM of a private key (what {@link StateFiles.readPrivateKey} reads back). */
export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Field readers for hand-validated JSON state (no schema library: the emulator imports none). */
export const field = {
  object(value: unknown, what: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new TypeError(`${what} must be an object`);
    }
    return value as Record<string, unknown>;
  },
  string(obj: Record<string, unknown>, key: string): string {
    const v = obj[key];
    if (typeof v !== 'string') throw new TypeError(`${key} must be a string`);
    return v;
  },
  integer(obj: Record<string, unknown>, key: string, max = 0xffffffff): number {
    const v = obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
      throw new TypeError(`${key} must be an integer in 0..${max}`);
    }
    return v;
  },
  hex(obj: Record<string, unknown>, key: string, size?: number): Buffer {
    const v = field.string(obj, key);
    if (!/^([0-9a-f]{2})*$/.test(v) || (size !== undefined && v.length !== size * 2)) {
      throw new TypeError(`${key} must be ${size ?? 'some'} bytes of lowercase hex`);
    }
    return Buffer.from(v, 'hex');
  },
  base64(obj: Record<string, unknown>, key: string): Buffer {
    const v = field.string(obj, key);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new TypeError(`${key} must be base64`);
    return Buffer.from(v, 'base64');
  },
} as const;
