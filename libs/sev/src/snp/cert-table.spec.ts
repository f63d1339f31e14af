import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { VECTOR_TIME, vectorBytes, vectorText } from './__fixtures__/vectors.js';
import {
  encodeSnpCertTable,
  parseSnpCertTable,
  SNP_CERT_TABLE_ENTRY_SIZE,
  SNP_CERT_TABLE_GUID,
} from './cert-table.js';
import { verifySnpCertChain } from './chain.js';
import { snpCertChainFromTable } from './chain-input.js';
import { SnpCertificateError, SnpInvalidFieldError, SnpTruncatedInputError } from './errors.js';

const derOf = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);
const ark = derOf(vectorText('snp/amd-ca/milan/ark.pem'));
const ask = derOf(vectorText('snp/amd-ca/milan/ask.pem'));
const vcek = vectorBytes('snp/reports/virtee-milan-vcek/vcek_milan.der');

describe('extended-report certificate table', () => {
  const table = encodeSnpCertTable([
    { guid: SNP_CERT_TABLE_GUID.ARK, data: ark },
    { guid: SNP_CERT_TABLE_GUID.ASK, data: ask },
    { guid: SNP_CERT_TABLE_GUID.VCEK, data: vcek },
  ]);

  it('round-trips and stores GUIDs in RFC 4122 byte order', () => {
    expect(Buffer.from(table.subarray(0, 4)).toString('hex')).toBe('c0b406a4');
    expect(
      table.subarray(3 * SNP_CERT_TABLE_ENTRY_SIZE, 4 * SNP_CERT_TABLE_ENTRY_SIZE).every((b) => b === 0),
    ).toBe(true);
    const entries = parseSnpCertTable(table);
    expect(entries.map((e) => e.kind)).toEqual(['ARK', 'ASK', 'VCEK']);
    expect(Buffer.from(entries[2].data).equals(Buffer.from(vcek))).toBe(true);
  });

  it('yields a chain that verifies', () => {
    const verdict = verifySnpCertChain(snpCertChainFromTable(parseSnpCertTable(table)), { now: VECTOR_TIME });
    expect(verdict.ok && verdict.vekKind).toBe('VCEK');
  });

  it('keeps unknown GUIDs without a kind', () => {
    const other = encodeSnpCertTable([
      { guid: 'ECAE0C0F-9502-43B1-AFA2-0AE2E0D565B6', data: Uint8Array.of(1) },
    ]);
    expect(parseSnpCertTable(other)).toEqual([
      { guid: 'ecae0c0f-9502-43b1-afa2-0ae2e0d565b6', data: Uint8Array.of(1) },
    ]);
    expect(() => snpCertChainFromTable(parseSnpCertTable(other))).toThrow(SnpCertificateError);
    expect(() => encodeSnpCertTable([{ guid: 'not-a-guid', data: Uint8Array.of() }])).toThrow(
      SnpInvalidFieldError,
    );
  });

  it('rejects a table without terminator or with data past its end', () => {
    expect(() => parseSnpCertTable(table.subarray(0, 3 * SNP_CERT_TABLE_ENTRY_SIZE))).toThrow(
      SnpTruncatedInputError,
    );
    expect(() => parseSnpCertTable(table.subarray(0, table.length - 1))).toThrow(SnpTruncatedInputError);
  });
});
