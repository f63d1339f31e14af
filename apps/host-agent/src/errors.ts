import { CcmError, ErrorCodes, HostErrorCodes } from '@ccm/contracts';
import {
  QemuConfigError,
  QemuStartError,
  QmpCommandError,
  QmpCommandTimeoutError,
  QmpConnectTimeoutError,
  QmpError,
  QmpMalformedReplyError,
  QmpSocketClosedError,
} from '@ccm/qmp';
import { SevError } from '@ccm/sev';
import { isSevFirmwareError } from '@ccm/sev-emulator';

/**
 * Maps a hypervisor or secure-processor failure to the typed error a command replies with. `effect`
 * says whether the failed command may have changed anything (the saga compensates when it may have).
 */
export function toCcmError(err: unknown, what: string): CcmError {
  if (err instanceof CcmError) return err;
  if (err instanceof QemuStartError) {
    const last = err.stderrTail.trim().split('\n').pop();
    return new CcmError(
      HostErrorCodes.HypervisorStartFailed,
      `${what}: ${err.detail}${last ? `: ${last}` : ''}`,
      {
        retryable: false,
        cause: err,
        effect: 'none',
        details: {
          exitCode: err.exitCode,
          signal: err.signal,
          stderrTail: err.stderrTail.slice(-2000),
        },
      },
    );
  }
  if (err instanceof QmpMalformedReplyError) {
    return new CcmError(HostErrorCodes.HypervisorProtocol, `${what}: ${err.message}`, {
      retryable: false,
      cause: err,
      effect: 'maybe',
      details: { reason: err.reason, excerpt: err.excerpt, command: err.command },
    });
  }
  if (err instanceof QmpCommandError) {
    return new CcmError(HostErrorCodes.HypervisorRefused, `${what}: ${err.errorClass}: ${err.desc}`, {
      retryable: false,
      cause: err,
      effect: 'none',
      details: { command: err.command, errorClass: err.errorClass },
    });
  }
  if (err instanceof QmpSocketClosedError) {
    return new CcmError(HostErrorCodes.HypervisorGone, `${what}: the VM process is gone (${err.reason})`, {
      retryable: false,
      cause: err,
      effect: 'maybe',
    });
  }
  if (err instanceof QmpCommandTimeoutError || err instanceof QmpConnectTimeoutError) {
    return new CcmError(ErrorCodes.Timeout, `${what}: ${err.message}`, {
      retryable: true,
      cause: err,
      effect: 'maybe',
    });
  }
  if (err instanceof QemuConfigError) {
    return new CcmError(ErrorCodes.ValidationFailed, `${what}: ${err.message}`, {
      retryable: false,
      cause: err,
      effect: 'none',
    });
  }
  if (err instanceof QmpError) {
    return new CcmError(HostErrorCodes.HypervisorProtocol, `${what}: ${err.message}`, {
      retryable: err.retryable,
      cause: err,
      effect: 'maybe',
      details: { qmpCode: err.code },
    });
  }
  if (isSevFirmwareError(err)) {
    return new CcmError(HostErrorCodes.SecureProcessorRefused, `${what}: ${err.message}`, {
      retryable: false,
      cause: err,
      effect: 'none',
      details: { status: err.code, command: err.command, reason: err.reason },
    });
  }
  if (err instanceof SevError) {
    return new CcmError(HostErrorCodes.SecureProcessorRefused, `${what}: ${err.message}`, {
      retryable: false,
      cause: err,
      effect: 'none',
      details: { sevError: err.code },
    });
  }
  return new CcmError(ErrorCodes.Internal, `${what}: ${(err as Error)?.message ?? String(err)}`, {
    retryable: true,
    cause: err,
  });
}

export const notFound = (what: string): CcmError =>
  new CcmError(ErrorCodes.NotFound, `${what} is not known on this host`, {
    retryable: false,
    effect: 'none',
  });

export const conflict = (message: string, retryable = false): CcmError =>
  new CcmError(ErrorCodes.Conflict, message, { retryable, effect: 'none' });
