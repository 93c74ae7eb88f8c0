import { extname, join } from 'node:path';
import { Worker as Thread } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { Bus } from '../bus/port';
import { withSeq } from '../bus/messages';
import { encode } from '../encode';
import { Event } from '../gen/chatflow/v1/events';
import type { EventLog } from '../eventlog/port';
import type { Health } from '../health';
import type { Metrics } from '../metrics';
import type { FindQuery } from '../readstore/port';
import { earlyBudget, type MessageReader } from '../worker/worker';
import type { MessageDoc } from '../../projections/models';
import type { WorkerControl, WorkerRole } from '../composition/worker-role';
import type { Speech } from '../speech/factory';
import { Channel, fromWire, type Port, type WireError } from './channel';
import { logShape, serveEventLog } from './remote-log';
import type { WorkerThreadData, WorkerThreadReady } from './worker-thread';

/**
 * The worker role in a thread of its own, so that the embedded default uses a
 * second core (issue 15): the event loop keeps the gateway, the projector,
 * the log and the bus; the thread answers the messages. The thread reaches
 * them through the ports (src/threads/channel.ts): it appends and consumes
 * through this process's event log, publishes replies on its bus, reads the
 * messages read model here; its reply claims, media store, speech engines and
 * renderer are its own. Nothing of the guarantees moves: an event is done
 * (committed) when the thread's handler settles, exactly as in one thread.
 *
 * A thread that dies takes every message it held with it, uncommitted: they
 * are handed out again, but only a new process checks them against read
 * models that have caught up (claims live in memory), so `onDied` should end
 * the process (main.ts exits) and let its supervisor start it again, as after
 * a crash.
 */
export function workerThreadRole(deps: {
  config: Config;
  logger: Logger;
  log: EventLog;
  bus: Pick<Bus, 'publish'>;
  messages: MessageReader;
  settled(timeoutMs: number): Promise<boolean>;
  metrics: Metrics;
  health: Pick<Health, 'report'>;
  instance: string;
  media: { baseUrl: string; secret: Buffer };
  onDied(err: Error): void;
  /** The thread's module (default: the sibling worker-thread file). */
  entry?: string;
}): WorkerRole {
  const { logger } = deps;
  const shared = new SharedArrayBuffer(8);
  const stats = new Int32Array(shared);
  let thread: Thread | undefined;
  let ch: Channel | undefined;
  let consumersOf: ReturnType<typeof serveEventLog> | undefined;
  let stopping = false;
  let stopped: Promise<void> | undefined;
  const info: { llmName: string; speechSummary: Speech['summary'] } = { llmName: '', speechSummary: undefined as never };

  const waiting = () => {
    let n = 0;
    for (const c of consumersOf?.values() ?? []) n += c.lag();
    return n;
  };
  const worker: WorkerControl = {
    get processing() {
      return Atomics.load(stats, 0);
    },
    get peak() {
      return Atomics.load(stats, 1);
    },
    stats: () => ({ processing: Atomics.load(stats, 0), peak: Atomics.load(stats, 1), waiting: waiting() }),
    // Notes, not calls (see Worker.begin). A busy thread costs this loop no encoding and no message; an upload
    // larger than EARLY_UPLOAD_MAX_BYTES is not copied on this loop: the thread reads it from the media store once stored.
    begin: (event, upload) => {
      if ((upload?.length ?? 0) > EARLY_UPLOAD_MAX_BYTES || Atomics.load(stats, 0) >= earlyBudget(deps.config.maxProcessing)) return;
      ch?.note('worker.begin', encode(Event, event), upload);
    },
    callOff: (messageId) => ch?.note('worker.callOff', messageId),
    stop: async (graceMs) => {
      // The grace is timed here, on the loop whose shutdown deadline (main.ts) was set before it: at a deadline that
      // falls on the grace's end, what the thread holds is still named. On the thread's own clock it could be
      // stopped first whenever this loop ran late.
      const over = setTimeout(() => ch?.note('worker.graceOver'), graceMs);
      try {
        await ch?.call('worker.stop', graceMs);
      } finally {
        clearTimeout(over);
      }
    },
  };

  const role: WorkerRole = {
    worker,
    get llmName() {
      return info.llmName;
    },
    get speechSummary() {
      return info.speechSummary;
    },
    start: () =>
      new Promise<void>((resolve, reject) => {
        const t = (thread = startThread(deps.entry ?? join(__dirname, `worker-thread${extname(__filename)}`), {
          config: deps.config,
          instance: deps.instance,
          pretty: Boolean(process.stdout.isTTY),
          log: logShape(deps.log, true),
          media: { baseUrl: deps.media.baseUrl, secret: new Uint8Array(deps.media.secret) },
          stats: shared,
        }));
        const link = (ch = new Channel(t as unknown as Port));
        // Best effort, as the worker's own publish is: the reply is in the log and the client resumes from history.
        const publish = (subject: string, payload: Uint8Array) => deps.bus.publish(subject, payload).catch((err: unknown) => logger.warn({ err, subject }, 'could not publish to the bus'));
        // The thread's outcomes go to their gateways from here, as soon as the log has them (WorkerDeps.appendAndTell).
        consumersOf = serveEventLog(link, deps.log, (subject, update, at) => void publish(subject, withSeq(update, at.seq)));
        link.on('bus.publish', (subject: string, payload: Uint8Array) => void publish(subject, payload));
        link.on('messages.get', (id: string) => deps.messages.get(id));
        link.on('messages.find', (query: FindQuery<MessageDoc>) => deps.messages.find(query));
        link.on('settled', (timeoutMs: number) => deps.settled(timeoutMs));
        link.on('health.report', (name: string, problem: string | undefined) => deps.health.report(name, problem));
        link.on('ready', (ready: WorkerThreadReady) => {
          Object.assign(info, ready);
          deps.metrics.include(() => link.call('metrics'));
          resolve();
        });
        link.on('failed', (err: WireError) => {
          stopping = true;
          void t.terminate();
          reject(fromWire(err));
        });
        t.on('error', (err) => logger.error({ err }, 'the worker thread failed'));
        t.on('exit', (code) => {
          const err = new Error(`the worker thread exited (code ${code})`);
          link.close(err);
          if (stopping) return;
          reject(err);
          logger.fatal({ code }, 'the worker thread exited; the messages it held are answered after a restart');
          deps.health.report('worker', 'the worker thread exited');
          deps.onDied(err);
        });
      }),
    stop: () =>
      (stopped ??= (async () => {
        if (!thread || !ch) return;
        stopping = true;
        await ch.call('thread.stop').catch((err: unknown) => logger.warn({ err }, 'the worker thread did not stop cleanly'));
        await thread.terminate();
      })()),
  };
  return role;
}

/** The largest upload handed to the worker thread with its message (a copy on the event loop, ~0.1 ms per MiB): see WorkerControl.begin. */
export const EARLY_UPLOAD_MAX_BYTES = 1024 * 1024;

/**
 * The thread's module runs as plain JavaScript from a build, through tsx's
 * require hook from the TypeScript sources (tsx, ts-jest), as the media
 * renderer's threads.
 */
function startThread(entry: string, data: WorkerThreadData): Thread {
  if (extname(entry) !== '.ts') return new Thread(entry, { workerData: data });
  const hook = require.resolve('tsx/cjs');
  return new Thread(`require(${JSON.stringify(hook)}); require(${JSON.stringify(entry)});`, { eval: true, workerData: data });
}
