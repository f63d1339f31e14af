import { describe, expect, it } from 'vitest';
import { SevBadMacError, SevPolicyError, SevTruncatedError } from '@ccm/sev';
import { asFirmware, isSevFirmwareError, SevFirmwareError, SevFirmwareLengthError } from './errors.js';
import { SEV_STATUS, SEV_STATUS_LINUX_ALIASES, sevStatusName } from './status.js';

describe('status codes and the error taxonomy', () => {
  it('numbers every status as the SEV API does', () => {
    expect(Object.values(SEV_STATUS)).toEqual([...Array(0x19).keys()]);
    expect(sevStatusName(0x0b)).toBe('BAD_MEASUREMENT');
    expect(sevStatusName(0x99)).toBeUndefined();
    expect(SEV_STATUS[SEV_STATUS_LINUX_ALIASES.HWSEV_RET_PLATFORM]).toBe(0x13);
    expect(SEV_STATUS[SEV_STATUS_LINUX_ALIASES.DFFLUSH_REQUIRED]).toBe(0x0f);
  });

  it('errors carry the status name, its number, the command and a reason', () => {
    const err = new SevFirmwareError('POLICY_FAILURE', 'SEND_START', 'NOSEND', { reason: 'nosend' });
    expect(err).toBeInstanceOf(Error);
    expect([err.code, err.status, err.command, err.reason, err.name]).toEqual([
      'POLICY_FAILURE',
      7,
      'SEND_START',
      'nosend',
      'SevFirmwareError',
    ]);
    expect(isSevFirmwareError(err, 'POLICY_FAILURE')).toBe(true);
    expect(isSevFirmwareError(err, 'BAD_MEASUREMENT')).toBe(false);
    const len = new SevFirmwareLengthError('LAUNCH_START', 'session', 128, 127);
    expect([len.code, len.requiredLength, len.actualLength]).toEqual(['INVALID_LENGTH', 128, 127]);
  });

  it('translates libs/sev errors into firmware statuses and leaves other errors alone', () => {
    const run = (e: Error) => {
      try {
        asFirmware('RECEIVE_UPDATE_DATA', () => {
          throw e;
        });
      } catch (err) {
        return err;
      }
    };
    expect(run(new SevBadMacError('PACKET_MAC'))).toMatchObject({
      code: 'BAD_MEASUREMENT',
      reason: 'packet-mac',
    });
    expect(run(new SevBadMacError('POLICY_MAC'))).toMatchObject({
      code: 'POLICY_FAILURE',
      reason: 'policy-mac',
    });
    expect(run(new SevTruncatedError('x', 2, 1))).toMatchObject({ code: 'INVALID_LENGTH' });
    expect(run(new SevPolicyError(['NOSEND']))).toMatchObject({ code: 'POLICY_FAILURE' });
    const plain = new RangeError('not ours');
    expect(run(plain)).toBe(plain);
  });
});
