import { type FactoryProvider } from '@nestjs/common';
import { ConfigError } from '@ccm/config';
import { loadIdentity, type Identity } from '@ccm/keys';
import { MESSAGING_OPTIONS, type MessagingOptions } from '@ccm/messaging';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type KeyBrokerConfig } from '../config.js';

/** Injection token of the guest-agent identity the broker seals into launch secrets (or undefined). */
export const GUEST_AGENT_IDENTITY = Symbol.for('ccm.key-broker.guest-agent-identity');

/**
 * The guest-agent's identity from CCM_GUEST_AGENT_KEYS_DIR, checked at start: it must load, and its
 * signing key must be the key this broker's trust store names `guest-agent` (else guests that took it
 * from their launch secret would be refused by every service). A bad directory stops the broker with
 * a ConfigError (exit 78) naming the variable.
 */
export const guestAgentIdentityProvider: FactoryProvider<Promise<Identity | undefined>> = {
  provide: GUEST_AGENT_IDENTITY,
  inject: [SERVICE_CONFIG, MESSAGING_OPTIONS],
  useFactory: async (config: KeyBrokerConfig, messaging: MessagingOptions) => {
    const dir = config.CCM_GUEST_AGENT_KEYS_DIR;
    if (!dir) return undefined;
    const problem = (p: string) => new ConfigError('key-broker', [`CCM_GUEST_AGENT_KEYS_DIR: ${p}`]);
    const identity = await loadIdentity(dir, 'guest-agent').catch((err: unknown) => {
      throw problem((err as Error).message);
    });
    const signer = messaging.trust.lookup(identity.keyId)?.signer;
    if (signer !== 'guest-agent') {
      throw problem(
        `the signing key in ${dir} (${identity.keyId}) is ${signer ? `trusted as ${signer}` : 'not in the trust store'}, not as guest-agent`,
      );
    }
    return identity;
  },
};
