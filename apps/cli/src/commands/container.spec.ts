import { describe, expect, it } from 'vitest';
import { checkContainerRun } from './container.js';
import { CliError } from '../errors.js';

describe('ccm container run', () => {
  it('takes the container id, its VM and optionally the overlay and port', () => {
    expect(checkContainerRun(['run', 'web-1'], { vm: 'cvm-1' })).toEqual({
      id: 'web-1',
      vmId: 'cvm-1',
      port: 8080,
    });
    expect(checkContainerRun(['run', 'web-1'], { vm: 'cvm-1', overlay: 'ov', port: '9000' })).toEqual({
      id: 'web-1',
      vmId: 'cvm-1',
      overlay: 'ov',
      port: 9000,
    });
  });

  it.each([
    [['start', 'web-1'], { vm: 'cvm-1' }, 'ccm container takes run'],
    [['run'], { vm: 'cvm-1' }, 'one container id'],
    [['run', 'a', 'b'], { vm: 'cvm-1' }, 'one container id'],
    [['run', 'web-1'], {}, 'needs --vm VM'],
    [['run', 'web-1'], { vm: 'cvm-1', overlay: 'ov', port: '0' }, '--port must be a TCP port'],
    [['run', 'web-1'], { vm: 'cvm-1', port: '9000' }, 'it needs --overlay'],
    [['run', 'web 1'], { vm: 'cvm-1' }, 'invalid container id'],
    [['run', 'web-1'], { vm: 'a.b' }, 'invalid --vm'],
  ] as const)('refuses %j %j as a usage error', (rest, flags, message) => {
    const call = () => checkContainerRun(rest, flags);
    expect(call).toThrow(CliError);
    expect(call).toThrow(message);
  });
});
