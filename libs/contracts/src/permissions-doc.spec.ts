import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BOOTSTRAP, GUEST_OWNER, OPERATOR, SERVICES, type IdentityName } from './services.js';
import { natsPermissionsFor } from './permissions.js';
import { STREAMS } from './subjects.js';

const DOC = resolve(import.meta.dirname, '../../../docs/messaging.md');
const START =
  '<!-- permissions: generated from natsPermissionsFor, checked by libs/contracts permissions-doc.spec.ts -->';
const END = '<!-- permissions: end -->';

const STREAM_NAMES: string[] = Object.values(STREAMS).map((s) => s.name);
const JS = /^\$JS\.(API\.)?/;

/** `STREAM.INFO.CCM_EVENTS`, `…CCM_REQUESTS`, `…CCM_DLQ` become `STREAM.INFO.{CCM_EVENTS,CCM_REQUESTS,CCM_DLQ}`. */
function compact(items: string[]): string[] {
  const groups = new Map<string, string[]>();
  for (const item of items) {
    const stream = STREAM_NAMES.find((n) => item.split('.').includes(n));
    const key = stream ? item.replace(stream, '\u0000') : item;
    groups.set(key, [...(groups.get(key) ?? []), ...(stream ? [stream] : [])]);
  }
  return [...groups].map(([key, streams]) =>
    streams.length === 0
      ? key
      : key.replace('\u0000', streams.length === 1 ? streams[0] : `{${streams.join(',')}}`),
  );
}

const cell = (items: string[]) => (items.length ? items.map((i) => `\`${i}\``).join(', ') : '(none)');

/** The permissions tables of docs/messaging.md, as natsPermissionsFor makes them. */
function tables(): string {
  // As ccm-keys makes them: host-agents pinned to a host; the guest-agent identity is not pinned.
  const ids: Array<[string, IdentityName, { hostId?: string }]> = [
    ...SERVICES.map((s): [string, IdentityName, { hostId?: string }] =>
      s === 'host-agent' ? ['host-agent@`<hostId>`', s, { hostId: '<hostId>' }] : [s, s, {}],
    ),
    [OPERATOR, OPERATOR, {}],
    [GUEST_OWNER, GUEST_OWNER, {}],
    [BOOTSTRAP, BOOTSTRAP, {}],
  ];
  const subjects = ['| identity | may publish | may subscribe |', '| --- | --- | --- |'];
  const jetstream = ['| identity | JetStream API (`$JS.API.` …; `$JS.ACK.` for acks) |', '| --- | --- |'];
  for (const [label, id, scope] of ids) {
    const p = natsPermissionsFor(id, scope);
    subjects.push(`| ${label} | ${cell(p.publish.filter((s) => !JS.test(s)))} | ${cell(p.subscribe)} |`);
    jetstream.push(
      `| ${label} | ${cell(compact(p.publish.filter((s) => JS.test(s)).map((s) => s.replace(/^\$JS\.API\./, ''))))} |`,
    );
  }
  return `${subjects.join('\n')}\n\n${jetstream.join('\n')}`;
}

/** Table text as Prettier may align it: runs of spaces and of dashes do not count. */
const normalized = (md: string) =>
  md
    .trim()
    .split('\n')
    .map((l) => l.replace(/\s+/g, ' ').replace(/-{3,}/g, '---').trim())
    .join('\n');

describe('docs/messaging.md', () => {
  it('states exactly the NATS permissions natsPermissionsFor gives every identity', () => {
    const doc = readFileSync(DOC, 'utf8');
    const from = doc.indexOf(START);
    const to = doc.indexOf(END);
    expect(from, `${DOC} has no "${START}" marker`).toBeGreaterThan(-1);
    expect(normalized(doc.slice(from + START.length, to))).toBe(normalized(tables()));
  });
});
