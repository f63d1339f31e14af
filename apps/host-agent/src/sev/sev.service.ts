import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { SERVICE_CONFIG } from '@ccm/runtime';
import { type HostAgentConfig } from '../config.js';
import { type SecureProcessor } from './secure-processor.js';

/** Injection token of the secure processor this host was configured with (undefined: no SEV). */
export const SECURE_PROCESSOR = Symbol.for('ccm.host-agent.secure-processor');

/** The host's secure processor, if it has one. */
@Injectable()
export class SevService implements OnApplicationShutdown {
  private readonly log = new Logger('Sev');

  constructor(
    @Inject(SECURE_PROCESSOR) readonly processor: SecureProcessor | undefined,
    @Inject(SERVICE_CONFIG) private readonly config: HostAgentConfig,
  ) {
    this.log.log(
      processor
        ? `SEV ${processor.mode}: firmware ${processor.version.apiMajor}.${processor.version.apiMinor} build ${processor.version.build}`
        : `no SEV on host ${config.CCM_HOST_ID} (CCM_SEV=${config.CCM_SEV})`,
    );
  }

  async onApplicationShutdown(): Promise<void> {
    await this.processor?.close();
  }
}
