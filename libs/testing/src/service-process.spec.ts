import { afterEach, describe, expect, it } from 'vitest';
import { httpUrlOf } from './service-process.js';

describe('httpUrlOf', () => {
  const inherited = process.env['CCM_HTTP_HOST'];
  afterEach(() => {
    if (inherited === undefined) delete process.env['CCM_HTTP_HOST'];
    else process.env['CCM_HTTP_HOST'] = inherited;
  });

  it("is loopback by default, and the service's CCM_HTTP_HOST when it was given one", () => {
    delete process.env['CCM_HTTP_HOST'];
    expect(httpUrlOf({}, 8080)).toBe('http://127.0.0.1:8080');
    // a host-agent in a lab namespace listens on its namespace's address
    expect(httpUrlOf({ CCM_HTTP_HOST: '10.200.1.2' }, 41_000)).toBe('http://10.200.1.2:41000');
  });

  it('takes an inherited CCM_HTTP_HOST as the service does, its own env first', () => {
    process.env['CCM_HTTP_HOST'] = '10.9.9.9';
    expect(httpUrlOf({}, 1)).toBe('http://10.9.9.9:1');
    expect(httpUrlOf({ CCM_HTTP_HOST: '10.1.1.1' }, 1)).toBe('http://10.1.1.1:1');
  });

  it('reaches a server on every address through loopback; IPv6 in brackets', () => {
    expect(httpUrlOf({ CCM_HTTP_HOST: '0.0.0.0' }, 80)).toBe('http://127.0.0.1:80');
    expect(httpUrlOf({ CCM_HTTP_HOST: '::' }, 80)).toBe('http://[::1]:80');
    expect(httpUrlOf({ CCM_HTTP_HOST: 'fd00::2' }, 80)).toBe('http://[fd00::2]:80');
  });
});
