import { isCcmError, type CcmError } from '@ccm/contracts';

/** The typed error a promise rejects with (fails the test if it resolves or throws something else). */
export async function ccmFailure(p: Promise<unknown>): Promise<CcmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isCcmError(err)) throw new Error(`expected a CcmError, got ${String(err)}`);
  return err;
}
