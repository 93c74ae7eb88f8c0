import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createMetrics } from './metrics';
import { PACKAGE_ROOT } from './paths';

async function metricNames(): Promise<string[]> {
  return (await createMetrics().registry.getMetricsAsJSON()).map((m) => m.name);
}

describe('metrics', () => {
  it('names every series with one chatflow_ prefix (no chatflow_process_process_…)', async () => {
    const names = await metricNames();
    expect(names).toEqual(expect.arrayContaining([
      'chatflow_process_cpu_seconds_total', 'chatflow_process_resident_memory_bytes', 'chatflow_nodejs_eventloop_lag_p99_seconds',
      'chatflow_clients_connected', 'chatflow_reply_latency_seconds',
    ]));
    expect(names.filter((n) => !n.startsWith('chatflow_') || /^chatflow_(\w+_)?(process|nodejs)_(process|nodejs)_/.test(n))).toEqual([]);
  });

  it('the Grafana dashboard (deploy/grafana/chatflow.json) queries only metrics that exist, and shows the ones operators watch', async () => {
    const dashboard = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'deploy', 'grafana', 'chatflow.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    const used = new Set(exprs.flatMap((e) => e.match(/chatflow_\w+/g) ?? []).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    const names = await metricNames();
    expect([...used].filter((n) => !names.includes(n))).toEqual([]);
    for (const watched of [
      'chatflow_clients_connected', 'chatflow_admissions_refused_total', 'chatflow_messages_processing', 'chatflow_messages_waiting',
      'chatflow_reply_latency_seconds', 'chatflow_log_append_seconds', 'chatflow_media_put_seconds', 'chatflow_projection_lag_events',
    ]) expect(used).toContain(watched);
  });

  it('sums a thread\'s registry into /metrics, counts the process-wide figures once, and still answers when the thread is gone', async () => {
    const process_ = createMetrics();
    const thread = createMetrics({ defaults: false });
    process_.messagesAccepted.inc({ kind: 'text' }, 2);
    thread.responses.inc({ outcome: 'answered' }, 3);
    thread.messagesProcessingPeak.set(7);
    let gone = false;
    process_.include(() => (gone ? Promise.reject(new Error('the worker thread exited')) : thread.registry.getMetricsAsJSON()));
    const value = (body: string, series: string) => new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1];
    const body = await process_.exposition.metrics();
    expect(value(body, 'chatflow_responses_total{outcome="answered"}')).toBe('3');
    expect(value(body, 'chatflow_messages_processing_peak')).toBe('7');
    expect(value(body, 'chatflow_messages_accepted_total{kind="text"}')).toBe('2');
    expect(body.match(/^chatflow_process_cpu_seconds_total /gm)).toHaveLength(1);
    gone = true;
    const after = await process_.exposition.metrics();
    expect(value(after, 'chatflow_messages_accepted_total{kind="text"}')).toBe('2');
    expect(value(after, 'chatflow_responses_total{outcome="answered"}')).toBeUndefined();
  });
});
