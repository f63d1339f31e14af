#!/usr/bin/env node
/**
 * ccm-keys: creates (or completes) a keys dir with one NATS NKEY user and one Ed25519 envelope signing
 * key per CCM identity, the trust store, and the nats-server authorization include whose permissions
 * let each service use only its own subjects.
 *
 *   node dist/tools/keys/main.js --out DIR [--host-id ID ...]   (one pinned host-agent identity per host)
 */
import { parseArgs } from 'node:util';
import { OPERATOR, SERVICES } from '@ccm/contracts';
import { generateKeys } from '@ccm/keys';

try {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, 'host-id': { type: 'string' } },
    strict: true,
  });
  if (!values.out) throw new Error('--out DIR is required');
  const { trust, natsAuthFile } = await generateKeys(values.out, {
    signers: [...SERVICES, OPERATOR],
    hostId: values['host-id'],
  });
  process.stdout.write(
    `keys for ${Object.keys(trust).length} identities in ${values.out}\nnats-server include: ${natsAuthFile}\n`,
  );
} catch (err) {
  process.stderr.write(`ccm-keys: ${(err as Error).message}\nusage: ccm-keys --out DIR [--host-id ID ...]\n`);
  process.exit(2);
}
