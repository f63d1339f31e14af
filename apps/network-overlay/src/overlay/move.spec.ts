import { describe, expect, it, vi } from 'vitest';
import { SimOverlayDriver } from '../driver/sim-driver.js';
import { moveAddress, peerSpecsFor, type MeshPeer } from './move.js';

const CIDR = '10.9.0.0/24';
const IP = '10.9.0.50';

/** Three joined sim nodes, the workload /32 at vm-a; `peers` as the rows say after its move to vm-b. */
async function mesh() {
  const d = new SimOverlayDriver();
  const node = (vmId: string, n: number, workloadIps: string[]): MeshPeer => ({
    vmId,
    publicKey: `key-${vmId}`,
    nodeIp: `10.9.0.${n}`,
    workloadIps,
  });
  const before = [node('vm-a', 1, [IP]), node('vm-b', 2, []), node('vm-c', 3, [])];
  for (const p of before) await d.joinNode(p.vmId, { ...p, overlayCidr: CIDR });
  for (const p of before) await d.setPeers(p.vmId, peerSpecsFor(p.vmId, before));
  await d.addAddress('vm-a', IP);
  const peers = [node('vm-a', 1, []), node('vm-b', 2, [IP]), node('vm-c', 3, [])];
  return { d, peers };
}

/** Moves the /32 vm-a → vm-b, waiting `answerWaitMs` for an answer: the figures and the watches started. */
async function move(answerWaitMs: number) {
  const { d, peers } = await mesh();
  const watch = vi.spyOn(d, 'watch');
  const figures = await moveAddress(d, { ip: IP, from: 'vm-a', to: 'vm-b', port: 80, peers, answerWaitMs });
  expect(d.route('vm-c', IP)).toBe('vm-b');
  return { figures, watch };
}

describe('moveAddress', () => {
  it('with no wait for an answer it starts no observer: the /32 moves, no brownout figure', async () => {
    const { figures, watch } = await move(0);
    expect(watch).not.toHaveBeenCalled();
    expect(figures).toMatchObject({ brownoutMs: null, sourceAnswered: false, peersUpdated: 3 });
  });

  it('with a wait it probes from the third peer and measures the brownout', async () => {
    const { figures, watch } = await move(2_000);
    expect(watch).toHaveBeenCalledWith('vm-c', IP, 80);
    expect(figures.brownoutMs).not.toBeNull();
  });
});
