import { findQemuBinary } from '@ccm/qmp';
import { join } from 'node:path';
import { containerBuildUnavailable } from '../container-image.js';
import { netnsUnavailable } from '@ccm/testing';

/** The fw_cfg run script that starts the guest-agent from the app disk (agent-run.sh). */
export const AGENT_RUN_SCRIPT = join(import.meta.dirname, 'agent-run.sh');

/**
 * Why the guest-agent cannot run in container guests on this host (no QEMU, no image build, no
 * network namespaces or taps), or undefined when it can.
 */
export function agentGuestUnavailable(): string | undefined {
  return !findQemuBinary()
    ? 'qemu-system-x86_64 is not installed (tools/dev.sh installs qemu-system-x86 from tools/system-packages.txt)'
    : (containerBuildUnavailable() ?? netnsUnavailable());
}
