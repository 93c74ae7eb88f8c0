import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { freePort } from '../../test/web-helpers';
import { loadConfig } from '../config/config';
import { openBus, openEventLog, openMedia, openStorage } from './engines';

/**
 * A process waiting at start for an engine that is not there (Kafka, MongoDB,
 * NATS or S3 down, or a wrong address) is stopped by its operator (Ctrl-C,
 * systemctl stop): each wait gives up at once when start-up is called off,
 * instead of retrying for ever while the signal is ignored.
 */
describe('start-up waits on an unreachable engine end when start-up is called off', () => {
  let closedPort: number;
  let dir: string;
  const logger = pino({ level: 'silent' });

  beforeAll(async () => {
    closedPort = await freePort(); // nothing listens there: refused at once, as an engine not started
    dir = await mkdtemp(join(tmpdir(), 'chatflow-startup-abort-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const config = () =>
    loadConfig({
      CHATFLOW_DATA_DIR: dir,
      KAFKA_BROKERS: `127.0.0.1:${closedPort}`,
      MONGODB_URI: `mongodb://127.0.0.1:${closedPort}/chatflow`,
      NATS_URL: `nats://127.0.0.1:${closedPort}`,
      S3_ENDPOINT: `http://127.0.0.1:${closedPort}`,
      CHATFLOW_MONGO_TIMEOUT_MS: '1000',
    });

  const waits: [string, (signal: AbortSignal) => Promise<unknown>][] = [
    ['Kafka', (signal) => openEventLog(config(), logger, 'test', { signal })],
    ['MongoDB', (signal) => openStorage(config(), logger, undefined, signal)],
    ['NATS', (signal) => openBus(config(), logger, 'test', signal)],
    ['S3', (signal) => openMedia(config(), logger, { baseUrl: 'http://127.0.0.1:1', secret: Buffer.from('x'), now: Date.now }, signal)],
  ];

  it.each(waits)('%s: retried while it is away, given up within a second of the call-off with its reason', async (_name, open) => {
    const controller = new AbortController();
    const reason = new Error('start-up stopped: SIGTERM');
    const outcome = open(controller.signal).then(
      () => 'opened',
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 1_500)); // a few attempts refused
    const calledOff = Date.now();
    controller.abort(reason);
    await expect(outcome).resolves.toBe(reason);
    expect(Date.now() - calledOff).toBeLessThan(1_000);
  }, 20_000);
});
