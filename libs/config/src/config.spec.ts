import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';
import { serviceConfigSchema } from './service-config.js';

describe('loadConfig', () => {
  it('applies named defaults', () => {
    const cfg = loadConfig('svc', serviceConfigSchema, { CCM_KEYS_DIR: '/k' });
    expect(cfg.CCM_NATS_URL).toEqual(['nats://127.0.0.1:4222']);
    expect(cfg.CCM_HTTP_PORT).toBe(8080);
    expect(cfg.CCM_SHUTDOWN_GRACE_MS).toBe(10_000);
  });

  it('reports every problem at once with the variable, the rule and the value', () => {
    const err = (() => {
      try {
        loadConfig('key-broker', serviceConfigSchema, {
          CCM_HTTP_PORT: '70000',
          CCM_NATS_URL: 'http://x',
          CCM_DATABASE_URL: 'mysql://x',
        });
      } catch (e) {
        return e;
      }
    })() as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.problems).toHaveLength(4);
    expect(err.message).toContain('invalid configuration for key-broker');
    expect(err.problems.find((p) => p.startsWith('CCM_HTTP_PORT'))).toContain('got "70000"');
    expect(err.problems.find((p) => p.startsWith('CCM_KEYS_DIR'))).toContain('it is not set');
    expect(err.problems.find((p) => p.startsWith('CCM_NATS_URL'))).toContain('nats://host:port');
    expect(err.problems.find((p) => p.startsWith('CCM_DATABASE_URL'))).toContain('postgres://');
  });
});
