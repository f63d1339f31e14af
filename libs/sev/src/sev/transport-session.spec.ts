import { describe, expect, it } from 'vitest';
import { syntheticChain } from './__fixtures__/chains.js';
import { SevBadMacError, SevInvalidStateError } from './errors.js';
import { SevReceiveSession, SevSendSession } from './transport-session.js';

describe('typed SEND / RECEIVE sessions', () => {
  const target = syntheticChain();
  const source = syntheticChain();
  const chainOptions = { extraRoots: [{ ark: target.chain.ark, generation: 'rome' as const }] };

  it('pages sealed by the source open on the target; finish ends both sides', () => {
    const send = SevSendSession.start({
      sourcePdhPrivateKey: source.keys.pdh,
      policy: 0x1,
      context: { target: target.chain },
      chainOptions,
    });
    const receive = SevReceiveSession.start({
      targetPdhPrivateKey: target.keys.pdh,
      sourcePdh: source.chain.pdh,
      session: send.session,
      policy: 0x1,
    });
    const pages = [Buffer.alloc(4096, 1), Buffer.alloc(4096, 2), Buffer.alloc(4096, 3)];
    const packets = pages.map((p) => send.sealUpdate(p));
    expect(new Set(packets.map((p) => Buffer.from(p.header.iv).toString('hex'))).size).toBe(3);
    packets.forEach((p, i) => expect(receive.openUpdate(p.header, p.ciphertext).equals(pages[i])).toBe(true));
    expect(() => receive.openUpdate(packets[0].header, packets[1].ciphertext)).toThrow(SevBadMacError);
    expect(send.finish()).toEqual({ packets: 3 });
    expect(receive.finish()).toEqual({ packets: 3 });
    expect(() => send.sealUpdate(pages[0])).toThrow(SevInvalidStateError);
    expect(() => receive.openUpdate(packets[0].header, packets[0].ciphertext)).toThrow(SevInvalidStateError);
    expect(() => send.finish()).toThrow(SevInvalidStateError);
  });

  it('RECEIVE_START with another policy than the sender bound fails POLICY_MAC', () => {
    const send = SevSendSession.start({
      sourcePdhPrivateKey: source.keys.pdh,
      policy: 0x1,
      context: { target: target.chain },
      chainOptions,
    });
    expect(() =>
      SevReceiveSession.start({
        targetPdhPrivateKey: target.keys.pdh,
        sourcePdh: source.chain.pdh,
        session: send.session,
        policy: 0x3,
      }),
    ).toThrow(expect.objectContaining({ which: 'POLICY_MAC' }));
  });
});
