import { createMetrics } from './metrics';

describe('metrics', () => {
  it('names every series with one chatflow_ prefix (no chatflow_process_process_…)', async () => {
    const { registry } = createMetrics();
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toEqual(expect.arrayContaining([
      'chatflow_process_cpu_seconds_total', 'chatflow_process_resident_memory_bytes', 'chatflow_nodejs_eventloop_lag_p99_seconds',
      'chatflow_clients_connected', 'chatflow_reply_latency_seconds',
    ]));
    expect(names.filter((n) => !n.startsWith('chatflow_') || /^chatflow_(\w+_)?(process|nodejs)_(process|nodejs)_/.test(n))).toEqual([]);
  });
});
