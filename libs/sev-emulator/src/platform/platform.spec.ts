import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeAmdCaChain,
  decodeQemuSevCapabilities,
  decodeSevctlExport,
  decodeSevPlatformCertChain,
  encodeSevCertificate,
  verifySevChain,
} from '@ccm/sev';
import { failure, runningGuest } from '../__fixtures__/guests.js';
import { createTestBed, type TestBed } from '../__fixtures__/testbed.js';
import { SevStateStoreError } from '../errors.js';
import { SoftwareSecureProcessor } from '../processor.js';

describe('platform: state machine, identity and persistence', () => {
  let bed: TestBed;
  beforeAll(async () => {
    bed = await createTestBed();
  });
  afterAll(() => bed.cleanup());
  const trust = () => ({ extraRoots: bed.lab.trustAnchors().sevExtraRoots });

  it('walks UNINIT → INIT → WORKING → INIT and refuses commands in the wrong state', () => {
    const sp = bed.host('states', { init: false });
    expect(sp.platformStatus()).toMatchObject({
      state: 'UNINIT',
      owner: 'self',
      apiMajor: 1,
      apiMinor: 55,
      guestCount: 0,
    });
    expect(failure(() => sp.pekGen()).code).toBe('INVALID_PLATFORM_STATE');
    expect(failure(() => sp.pdhCertExport()).code).toBe('INVALID_PLATFORM_STATE');
    expect(sp.getId()).toHaveLength(64);
    sp.init();
    expect(failure(() => sp.init()).code).toBe('INVALID_PLATFORM_STATE');
    expect(failure(() => sp.platformReset()).code).toBe('INVALID_PLATFORM_STATE');
    const guest = runningGuest(sp);
    const status = sp.platformStatus();
    expect(status).toMatchObject({ state: 'WORKING', guestCount: 1, esInitialized: true });
    expect([...status.bytes]).toEqual([1, 55, 2, 0, 1, 0, 0, 21, 1, 0, 0, 0]);
    expect(failure(() => sp.pekGen()).code).toBe('INVALID_PLATFORM_STATE');
    expect(failure(() => sp.pekCsr()).code).toBe('INVALID_PLATFORM_STATE');
    const before = sp.pdhCertExport().pdh;
    sp.pdhGen();
    expect(sp.pdhCertExport().pdh.equals(before)).toBe(false);
    expect(failure(() => sp.decommission(guest)).code).toBe('ACTIVE');
    sp.deactivate(guest);
    sp.decommission(guest);
    expect(sp.platformStatus().state).toBe('INIT');
    expect(failure(() => sp.guestStatus(guest)).code).toBe('INVALID_GUEST');
    expect(guest.state).toBe('UNINIT');
  });

  it('keeps its identity across restarts: same CEK, PDH and chip id; the chain still verifies', () => {
    const sp = bed.host('persist');
    const chain = sp.certificateChain();
    const reopened = SoftwareSecureProcessor.open(sp.stateDir);
    expect(reopened.platformStatus().state).toBe('UNINIT');
    const again = reopened.certificateChain();
    expect(encodeSevCertificate(again.pdh)).toEqual(encodeSevCertificate(chain.pdh));
    expect(encodeSevCertificate(again.cek)).toEqual(encodeSevCertificate(chain.cek));
    expect(reopened.getId()).toEqual(sp.getId());
    expect(verifySevChain(again, trust()).ok).toBe(true);
    reopened.init();
    reopened.pdhGen();
    const third = SoftwareSecureProcessor.open(sp.stateDir).certificateChain();
    expect(encodeSevCertificate(third.pdh)).toEqual(encodeSevCertificate(reopened.certificateChain().pdh));
    expect(verifySevChain(third, trust()).ok).toBe(true);
  });

  it('PEK_GEN and PLATFORM_RESET rotate OCA, PEK and PDH but never the CEK', () => {
    const sp = bed.host('rotate');
    const first = sp.certificateChain();
    sp.pekGen();
    const second = sp.certificateChain();
    expect(encodeSevCertificate(second.pek)).not.toEqual(encodeSevCertificate(first.pek));
    expect(encodeSevCertificate(second.oca)).not.toEqual(encodeSevCertificate(first.oca));
    expect(encodeSevCertificate(second.cek)).toEqual(encodeSevCertificate(first.cek));
    expect(verifySevChain(second, trust()).ok).toBe(true);
    const guest = runningGuest(sp);
    sp.shutdown();
    expect(failure(() => sp.guestStatus(guest)).code).toBe('INVALID_GUEST');
    sp.platformReset();
    const third = sp.certificateChain();
    expect(encodeSevCertificate(third.pdh)).not.toEqual(encodeSevCertificate(second.pdh));
    expect(verifySevChain(third, trust()).ok).toBe(true);
  });

  it('exports the chain in every format libs/sev reads', () => {
    const sp = bed.host('formats');
    const { pdh, certChain } = sp.pdhCertExport();
    expect(pdh).toHaveLength(2084);
    expect(certChain).toHaveLength(6252);
    const platform = decodeSevPlatformCertChain(certChain);
    const amd = decodeAmdCaChain(sp.amdCertChain());
    const caps = decodeQemuSevCapabilities(JSON.stringify({ return: sp.qemuSevCapabilities() }));
    expect(Buffer.from(caps.cpu0Id ?? [])).toEqual(sp.getId());
    expect(caps.cbitpos).toBe(51);
    expect(verifySevChain({ ...caps, ...amd }, trust()).ok).toBe(true);
    expect(verifySevChain({ pdh: caps.pdh, ...platform, ...amd }, trust()).ok).toBe(true);
    const sevctl = decodeSevctlExport(sp.sevctlExport());
    expect(verifySevChain({ ...sevctl, ask: amd.ask, ark: amd.ark }, trust()).ok).toBe(true);
  });

  it('refuses a state directory that was tampered with, or half written', () => {
    const a = bed.host('tamper-a');
    const b = bed.host('tamper-b');
    const identity = (sp: SoftwareSecureProcessor) =>
      JSON.parse(readFileSync(join(sp.stateDir, 'identity.json'), 'utf8')) as Record<
        string,
        { cert: string }
      >;
    const mixed = identity(a);
    mixed.pdh = identity(b).pdh;
    writeFileSync(join(a.stateDir, 'identity.json'), JSON.stringify(mixed));
    expect(() => SoftwareSecureProcessor.open(a.stateDir)).toThrow(SevStateStoreError);
    rmSync(join(b.stateDir, 'chip.json'));
    expect(() => SoftwareSecureProcessor.open(b.stateDir)).toThrow(
      expect.objectContaining({ code: 'HWERROR_PLATFORM' }),
    );
    expect(() => SoftwareSecureProcessor.create(b.stateDir, { lab: bed.lab })).toThrow(SevStateStoreError);
    expect(() => SoftwareSecureProcessor.open(bed.dir('nothing-here'))).toThrow(SevStateStoreError);
  });

  it('manages ASIDs like the firmware: ranges, ownership, DF_FLUSH after DEACTIVATE, WBINVD first', () => {
    const sp = bed.host('asids', { maxAsid: 2 });
    const one = runningGuest(sp);
    expect(sp.guestStatus(one)).toMatchObject({ asid: 1, state: 'RUNNING', kind: 'sev', policy: 1 });
    const two = runningGuest(sp);
    expect(failure(() => runningGuest(sp)).code).toBe('RESOURCE_LIMIT');
    expect(failure(() => sp.activate(two)).code).toBe('ACTIVE');
    sp.deactivate(two);
    expect(failure(() => sp.deactivate(two)).code).toBe('INACTIVE');
    expect(failure(() => sp.activate(two, 3)).code).toBe('INVALID_ASID');
    expect(failure(() => sp.activate(two, 1)).code).toBe('ASID_OWNED');
    expect(failure(() => sp.activate(two, 2)).code).toBe('DF_FLUSH_REQUIRED');
    expect(failure(() => sp.activate(two)).code).toBe('RESOURCE_LIMIT');
    expect(failure(() => sp.dfFlush()).code).toBe('WBINVD_REQUIRED');
    sp.wbinvd();
    sp.dfFlush();
    expect(sp.activate(two)).toBe(2);
    expect(failure(() => two.inGuest().memory.read(1 << 20, 16)).code).toBe('INVALID_ADDRESS');
  });
});
