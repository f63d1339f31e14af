#!/usr/bin/env node
/**
 * ccm-keys: creates (or completes) a keys dir with one NATS NKEY user and one Ed25519 envelope signing
 * key per CCM identity, the trust store, and the nats-server authorization include whose permissions
 * let each service use only its own subjects.
 *
 *   node dist/tools/keys/main.js --out DIR [--host-id ID ...] [--deploy-dir DIR]
 *
 * The bootstrap identity (the only one that may create or change streams, used by ccm-streams) is
 * made too. Host-agents get only pinned identities: each --host-id makes one host-agent identity pinned
 * to that host's subjects (`host-agent@<id>`); there is no identity that speaks for every host. --deploy-dir also splits the
 * keys into one dir per service identity (its own secrets and the trust store) and `nats/` (the
 * authorization include), for deployments that give each process only its own dir; the operator key is
 * not copied there.
 */
import { parseArgs } from 'node:util';
import { BOOTSTRAP, PERSON_SIGNERS, SERVICES } from '@ccm/contracts';
import { deployKeys, generateKeys, identitiesIn } from '@ccm/keys';

try {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      'host-id': { type: 'string', multiple: true },
      'deploy-dir': { type: 'string' },
    },
    strict: true,
  });
  if (!values.out) throw new Error('--out DIR is required');
  const { trust, natsAuthFile } = await generateKeys(values.out, {
    signers: [...SERVICES.filter((s) => s !== 'host-agent'), ...PERSON_SIGNERS, BOOTSTRAP],
    hostIds: values['host-id'] ?? [],
  });
  process.stdout.write(
    `keys for ${Object.keys(trust).length} identities in ${values.out}\nnats-server include: ${natsAuthFile}\n`,
  );
  const deployDir = values['deploy-dir'];
  if (deployDir) {
    const services = (await identitiesIn(values.out)).filter(
      (id) => !(PERSON_SIGNERS as readonly string[]).includes(id),
    );
    await deployKeys(values.out, deployDir, services);
    process.stdout.write(`one dir per identity in ${deployDir}: ${services.join(', ')}, nats\n`);
  }
} catch (err) {
  process.stderr.write(
    `ccm-keys: ${(err as Error).message}\nusage: ccm-keys --out DIR [--host-id ID ...] [--deploy-dir DIR]\n`,
  );
  process.exit(2);
}
