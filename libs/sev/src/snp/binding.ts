import { bytesEqual, isZeroRange, toHex } from './bytes.js';
import {
  SnpChipIdMismatchError,
  type SnpError,
  SnpGenerationMismatchError,
  SnpSigningKeyMismatchError,
  SnpTcbMismatchError,
} from './errors.js';
import { tcbLayoutOf } from './generation.js';
import type { SnpAttestationReport } from './report.js';
import { tcbDifferences } from './tcb.js';
import { type SnpVekInfo, VCEK_HWID_SIZE } from './vek.js';

/**
 * Every way a report disagrees with the VCEK/VLEK certificate that should have signed it (empty when it
 * is bound): KEY_INFO.SIGNING_KEY vs. certificate kind, product line, REPORTED_TCB vs. the SPL
 * extensions (bl/tee/snp/ucode, and fmc on Turin), and for a VCEK the hwID vs. CHIP_ID. REPORTED_TCB, not
 * CURRENT_TCB, is what the key was derived for (the VLEK vector has CURRENT 0xDC, REPORTED 0xD9 ucode).
 */
export function vekBindingErrors(report: SnpAttestationReport, vek: SnpVekInfo): SnpError[] {
  const errors: SnpError[] = [];
  if (report.keyInfo.signingKey !== vek.kind) {
    errors.push(new SnpSigningKeyMismatchError(report.keyInfo.signingKey, vek.kind));
  }
  if (report.generation !== undefined && report.generation !== vek.generation) {
    errors.push(
      new SnpGenerationMismatchError(vek.generation, report.generation, 'report vs. VCEK/VLEK productName'),
    );
    return errors;
  }
  if (report.tcbLayout !== tcbLayoutOf(vek.generation)) {
    errors.push(
      new SnpGenerationMismatchError(tcbLayoutOf(vek.generation), report.tcbLayout, 'report TCB layout'),
    );
    return errors;
  }
  const differences = tcbDifferences(report.reportedTcb, vek.tcb);
  if (differences.length > 0) errors.push(new SnpTcbMismatchError(differences));
  if (vek.kind === 'VCEK' && vek.hwId) {
    const size = VCEK_HWID_SIZE[vek.generation];
    const chipPart = report.chipId.subarray(0, size);
    const restZero = isZeroRange(report.chipId, size);
    if (vek.hwId.length !== size || !bytesEqual(chipPart, vek.hwId) || !restZero) {
      errors.push(new SnpChipIdMismatchError(toHex(report.chipId), toHex(vek.hwId)));
    }
  }
  return errors;
}

/** Throws the first {@link vekBindingErrors} error, if any. */
export function assertVekBinding(report: SnpAttestationReport, vek: SnpVekInfo): void {
  const [first] = vekBindingErrors(report, vek);
  if (first) throw first;
}
