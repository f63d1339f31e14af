/** One sample of a Prometheus text exposition: its labels and value. */
export interface MetricSample {
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^[^{\s]+(?:\{(.*)\})? (\S+)$/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;
const unescape = (v: string) => v.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));

/** The samples of metric `name` in Prometheus text (not those of `name_sum`, `name_count`, ...). */
export function parseSamples(text: string, name: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[1] ?? '').matchAll(LABEL)) labels[l[1]] = unescape(l[2]);
    out.push({ labels, value: Number(m[2]) });
  }
  return out;
}

/** The samples of one metric a service serves now (`GET <httpUrl>/metrics?name=<name>`). */
export async function metricSamples(httpUrl: string, name: string): Promise<MetricSample[]> {
  const url = `${httpUrl}/metrics?name=${encodeURIComponent(name)}`;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return parseSamples(await res.text(), name);
}
