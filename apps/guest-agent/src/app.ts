import { type ServiceDefinition } from '@ccm/runtime';
import { GuestAttestation } from './attest/guest-attestation.js';
import { guestAgentIdentityFromLaunch } from './attest/launch-secrets.js';
import { CheckpointService } from './checkpoint/checkpoint.service.js';
import { GuestCommands } from './checkpoint/guest-commands.handler.js';
import { configSchema } from './config.js';
import { overlayProviders } from './overlay/overlay.module.js';
import { VmWatch } from './vm/vm-watch.js';

/** The guest-agent: runs inside a confidential VM: containers, checkpoint/restore, sealed image streams. */
export const guestAgent: ServiceDefinition<typeof configSchema> = {
  service: 'guest-agent',
  database: false,
  configSchema,
  scopeId: (c) => c.CCM_VM_ID,
  identity: guestAgentIdentityFromLaunch,
  providers: [CheckpointService, GuestAttestation, GuestCommands, VmWatch, ...overlayProviders],
};
