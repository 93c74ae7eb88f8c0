import { extname, join } from 'node:path';
import { Worker as Thread } from 'node:worker_threads';
import type { Logger } from 'pino';
import { renderImage, type ImageSpec, type RenderedImage } from './png';
import { asBuffer } from '../encode';

/**
 * Makes the reply images (PNG): CPU work of 10–40 ms each; done on the event
 * loop, every other message waits behind them (the reference load test
 * measured it: most of the server's busy time, and the overhead p99 of text
 * replies). The thread pool keeps the event loop free. (Voice replies come
 * from the speech synthesizer, src/speech, in its own process.)
 */
export interface ReplyMediaRenderer {
  image(spec: ImageSpec): Promise<RenderedImage>;
  close(): Promise<void>;
}

export type RenderTask = { kind: 'image'; spec: ImageSpec };

/** The work itself, the same in a thread and inline. */
export function renderTask(task: RenderTask): RenderedImage {
  return renderImage(task.spec);
}

/** Renders on the calling thread (`CHATFLOW_MEDIA_THREADS=0`). */
export function inlineRenderer(): ReplyMediaRenderer {
  return {
    image: async (spec) => renderTask({ kind: 'image', spec }),
    close: async () => {},
  };
}

export function createRenderer(threads: number, logger: Logger): ReplyMediaRenderer {
  return threads > 0 ? new ThreadRenderer(threads, logger) : inlineRenderer();
}

class ThreadExited extends Error {
  constructor(code: number) {
    super(`media render thread exited (code ${code})`);
  }
}

interface Pending {
  resolve: (v: RenderedImage) => void;
  reject: (err: Error) => void;
}

interface Slot {
  thread: Thread;
  pending: Map<number, Pending>;
}

/** What a render thread posts back. */
export type RenderReply =
  | { id: number; ok: true; result: RenderedImage }
  | { id: number; ok: false; message: string };

/**
 * A fixed pool of worker threads; each task goes to the thread with the fewest
 * tasks outstanding. A thread that dies fails its outstanding tasks (the worker
 * retries the message like any other failure) and is replaced.
 */
class ThreadRenderer implements ReplyMediaRenderer {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  constructor(size: number, private readonly logger: Logger) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn(i));
  }

  image(spec: ImageSpec): Promise<RenderedImage> {
    return this.run({ kind: 'image', spec });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.thread.terminate()));
  }

  /**
   * A task whose thread died is tried once more on the replacement: a crash
   * elsewhere in that thread should not fail this reply. Twice is the task's
   * own doing and fails it.
   */
  private async run(task: RenderTask): Promise<RenderedImage> {
    try {
      return await this.dispatch(task);
    } catch (err) {
      if (!(err instanceof ThreadExited) || this.closed) throw err;
      this.logger.warn({ kind: task.kind }, 'media render thread died during a task; trying it once more');
      return this.dispatch(task);
    }
  }

  private dispatch(task: RenderTask): Promise<RenderedImage> {
    if (this.closed) return Promise.reject(new Error('media renderer is closed'));
    const slot = this.slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.thread.postMessage({ id, task });
    });
  }

  private spawn(index: number): Slot {
    const slot: Slot = { thread: startThread(), pending: new Map() };
    slot.thread.unref(); // never what keeps a process alive
    slot.thread.on('message', (reply: RenderReply) => {
      const p = slot.pending.get(reply.id);
      if (!p) return;
      slot.pending.delete(reply.id);
      if (reply.ok) p.resolve({ ...reply.result, bytes: asBuffer(reply.result.bytes) } as RenderedImage);
      else p.reject(new Error(`rendering reply media failed: ${reply.message}`));
    });
    slot.thread.on('error', (err) => this.logger.error({ err, thread: index }, 'media render thread failed'));
    slot.thread.on('exit', (code) => {
      for (const p of slot.pending.values()) p.reject(new ThreadExited(code));
      slot.pending.clear();
      if (this.closed) return;
      this.logger.warn({ thread: index, code }, 'media render thread exited; starting a new one');
      this.slots[index] = this.spawn(index);
    });
    return slot;
  }
}

/**
 * The thread's entry is the sibling render-thread file. Run from TypeScript
 * sources (tsx, ts-jest) it is loaded through tsx's require hook; from a build,
 * as plain JavaScript.
 */
function startThread(): Thread {
  const ext = extname(__filename);
  const entry = join(__dirname, `render-thread${ext}`);
  if (ext !== '.ts') return new Thread(entry);
  const hook = require.resolve('tsx/cjs');
  return new Thread(`require(${JSON.stringify(hook)}); require(${JSON.stringify(entry)});`, { eval: true });
}
