import { serviceConfigSchema } from '@ccm/config';
import { z } from 'zod';

/** host-agent settings: the common service settings plus CCM_HOST_ID, the id its command subjects carry. */
export const configSchema = serviceConfigSchema.extend({
  CCM_HOST_ID: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "-" and "_" only'),
});
