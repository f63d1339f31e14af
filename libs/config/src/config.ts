import { z } from 'zod';

/** Thrown at start when the environment does not describe a valid configuration; lists every problem. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly service: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration for ${service}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/**
 * Parses `env` with `schema` in one step. Every problem is reported at once with the variable's name,
 * what was expected and what was found, so an operator fixes the deployment in one pass.
 */
export function loadConfig<S extends z.ZodType>(
  service: string,
  schema: S,
  env: Record<string, string | undefined>,
): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const key = issue.path.map(String).join('.') || '(environment)';
    const raw = issue.path.length === 1 ? env[String(issue.path[0])] : undefined;
    const got = raw === undefined ? 'it is not set' : `got ${JSON.stringify(raw)}`;
    return `${key}: ${issue.message} (${got})`;
  });
  throw new ConfigError(service, problems);
}

/** An integer from an environment string, within [min, max]. */
export const envInt = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** A boolean from `true/false/1/0/yes/no`. */
export const envBool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** A nats:// or tls:// URL list, comma separated. */
export const natsServers = z
  .string()
  .min(1)
  .transform((s) => s.split(',').map((u) => u.trim()))
  .refine(
    (list) => list.every((u) => /^(nats|tls|ws|wss):\/\/[^\s]+$/.test(u)),
    'must be nats://host:port URLs, comma separated',
  );

/** A postgres:// URL. */
export const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\/[^\s]+$/, 'must be a postgres://user:pass@host:port/db URL');
