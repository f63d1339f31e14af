import { serviceConfigSchema } from '@ccm/config';
import { z } from 'zod';

/** guest-agent settings: the common service settings plus CCM_VM_ID, the id its command subjects carry. */
export const configSchema = serviceConfigSchema.extend({
  CCM_VM_ID: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "-" and "_" only'),
});
