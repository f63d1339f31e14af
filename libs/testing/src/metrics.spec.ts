import { describe, expect, it } from 'vitest';
import { parseSamples } from './metrics.js';

const TEXT = `# HELP ccm_handlers_in_flight Messages whose handler runs in this process now
# TYPE ccm_handlers_in_flight gauge
ccm_handlers_in_flight{subject="ccm.cmd.vm-lifecycle.provision-vm",migration="m-1",service="vm-lifecycle"} 1
ccm_handlers_in_flight{subject="ccm.query.x",migration="",service="vm-lifecycle"} 2
ccm_handlers_in_flight_total{subject="not.this"} 9
ccm_odd{note="a \\"quoted\\" } brace\\nand a line"} 3
ccm_plain 4.5
`;

describe('parseSamples (Prometheus text)', () => {
  it('reads the samples of one metric with their labels, and no other metric sharing its prefix', () => {
    expect(parseSamples(TEXT, 'ccm_handlers_in_flight')).toEqual([
      {
        labels: { subject: 'ccm.cmd.vm-lifecycle.provision-vm', migration: 'm-1', service: 'vm-lifecycle' },
        value: 1,
      },
      { labels: { subject: 'ccm.query.x', migration: '', service: 'vm-lifecycle' }, value: 2 },
    ]);
  });

  it('unescapes label values and reads a metric without labels', () => {
    expect(parseSamples(TEXT, 'ccm_odd')).toEqual([
      { labels: { note: 'a "quoted" } brace\nand a line' }, value: 3 },
    ]);
    expect(parseSamples(TEXT, 'ccm_plain')).toEqual([{ labels: {}, value: 4.5 }]);
    expect(parseSamples(TEXT, 'ccm_missing')).toEqual([]);
  });
});
