import { serviceConfigSchema } from '@ccm/config';
import { z } from 'zod';

/** key-broker settings: the common service settings plus the guest-agent identity it hands out. */
export const keyBrokerConfigSchema = serviceConfigSchema.extend({
  /**
   * A directory holding the guest-agent's service identity (`guest-agent.nk`, its NATS user seed, and
   * `guest-agent.sign.pem`, its Ed25519 envelope signing key, as ccm-keys makes them), readable by the
   * key-broker only. Set, the broker checks at start that it loads and that its signing key is the one
   * its trust store knows as `guest-agent`, and seals both into every launch secret it releases for an
   * accepted measurement: an attested guest then needs no private key on a disk the host can read.
   * Unset, launch secrets carry the identity secret and disk key only (guests use their keys dir).
   */
  CCM_GUEST_AGENT_KEYS_DIR: z.string().regex(/^\//, 'an absolute path').optional(),
});
export type KeyBrokerConfig = z.infer<typeof keyBrokerConfigSchema>;
