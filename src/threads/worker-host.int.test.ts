import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../config/config';
import { createMetrics } from '../metrics';
import type { EventLog } from '../eventlog/port';
import { EARLY_UPLOAD_MAX_BYTES, workerThreadRole } from './worker-host';
import { MediaKind, type Event } from '../gen/chatflow/v1/events';
import { wavFromPcm16 } from '../media/wav';

const log: EventLog = {
  partitions: () => 1,
  append: () => Promise.reject(new Error('unused')),
  consume: () => Promise.reject(new Error('unused')),
  close: async () => {},
};

function role(gatewayId: string, onDied: (err: Error) => void, health: { report: jest.Mock }) {
  return workerThreadRole({
    config: { ...loadConfig({}), gatewayId },
    logger: pino({ level: 'silent' }),
    log,
    bus: { publish: async () => {} },
    messages: { get: async () => null, find: async () => [] },
    settled: async () => true,
    metrics: createMetrics({ defaults: false }),
    health,
    instance: 'test',
    media: { baseUrl: 'http://127.0.0.1:1', secret: Buffer.from('s') },
    onDied,
    entry: join(__dirname, '..', '..', 'test', 'fixtures', 'dying-thread.ts'),
  });
}

describe('the worker thread host', () => {
  it('ends the process (onDied) and reports the worker unhealthy when the thread dies on its own', async () => {
    const health = { report: jest.fn() };
    let died!: (err: Error) => void;
    const death = new Promise<Error>((r) => (died = r));
    const r = role('dies', (err) => died(err), health);
    await r.start();
    const err = await death;
    expect(err.message).toBe('the worker thread exited (code 3)');
    expect(health.report).toHaveBeenCalledWith('worker', 'the worker thread exited');
    // What it held is not answered by this process any more: calls fail at once.
    await expect(r.worker.stop(10)).rejects.toThrow('the worker thread exited (code 3)');
    await r.stop();
  });

  it('fails the start with the thread\'s own reason, and is not taken for a death', async () => {
    const onDied = jest.fn();
    const r = role('fail-at-start', onDied, { report: jest.fn() });
    await expect(r.start()).rejects.toThrow('could not open the media store: EACCES');
    await new Promise((res) => setTimeout(res, 200));
    expect(onDied).not.toHaveBeenCalled();
    await r.stop();
  });
});

/** A real worker thread on a log whose consumer hands nothing out, its data in `dataDir`. */
function liveRole(dataDir: string, gatewayId: string, metrics: ReturnType<typeof createMetrics>, onDied: (err: Error) => void) {
  return workerThreadRole({
    config: { ...loadConfig({ CHATFLOW_DATA_DIR: dataDir }), gatewayId },
    logger: pino({ level: 'silent' }),
    log: { ...log, consume: async () => ({ caughtUp: async () => {}, lag: () => 0, inFlight: () => 0, handedOut: () => undefined, stop: async () => {} }) },
    bus: { publish: async () => {} },
    messages: { get: async () => null, find: async () => [] },
    settled: async () => true,
    metrics,
    health: { report: jest.fn() },
    instance: 'test',
    media: { baseUrl: 'http://127.0.0.1:1', secret: Buffer.from('s') },
    onDied,
  });
}

describe('the worker thread\'s figures', () => {
  it('reach the process\'s /metrics: the thread\'s histograms cross the link and are summed in', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'chatflow-thread-metrics-'));
    const metrics = createMetrics();
    const onDied = jest.fn();
    const r = liveRole(dataDir, 'metrics', metrics, onDied);
    try {
      await r.start();
      metrics.processingSeconds.observe({ kind: 'text' }, 0.2);
      const body = await metrics.exposition.metrics();
      // The process's own observation, and the thread's histogram series (its zeros) summed in without a second copy.
      expect(body).toMatch(/^chatflow_processing_seconds_count\{kind="text"\} 1$/m);
      expect(body.match(/^chatflow_reply_latency_seconds_count 0$/gm)).toHaveLength(1);
      await new Promise((res) => setTimeout(res, 100));
      expect(onDied).not.toHaveBeenCalled();
    } finally {
      await r.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('counts the messages it begins early: one with a small upload, none with one too large to copy across (issue 15)', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'chatflow-thread-early-'));
    const metrics = createMetrics();
    const r = liveRole(dataDir, 'early', metrics, jest.fn());
    const voice = (id: string): Event => ({
      eventId: `e-${id}`, time: new Date(), clientId: 'alice', conversationId: 'c1', sessionId: 's1',
      payload: { $case: 'messageReceived', messageReceived: { messageId: id, clientMessageId: id, gatewayId: 'early', timeZone: 'UTC', content: { $case: 'media', media: { kind: MediaKind.MEDIA_KIND_AUDIO, key: `up/${id}`, mimeType: 'audio/wav', sizeBytes: 0, sha256: '', durationMs: 0 } } } },
    });
    const begun = async () => Number((await metrics.exposition.metrics()).match(/^chatflow_early_starts_total\{outcome="begun"\} (\d+)$/m)?.[1] ?? 0);
    try {
      await r.start();
      r.worker.begin(voice('big'), Buffer.alloc(EARLY_UPLOAD_MAX_BYTES + 1));
      r.worker.begin(voice('small'), wavFromPcm16(Buffer.alloc(32_000), 16_000));
      await new Promise((res) => setTimeout(res, 200));
      expect(await begun()).toBe(1);
      expect(r.worker.processing).toBe(1);
      r.worker.callOff('small');
      for (let i = 0; i < 50 && r.worker.processing > 0; i++) await new Promise((res) => setTimeout(res, 20));
      expect(r.worker.processing).toBe(0);
    } finally {
      await r.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
