import { performance } from 'node:perf_hooks';
import type { Event } from '../gen/chatflow/v1/events';
import type { EarlyStart } from '../gateway/deps';

/** How busy the event loop may be for the worker to begin on messages early: above it, the loop is what messages wait for. */
export const EARLY_BUSY_ABOVE = 0.5;
/** How often the loop's busy share is read (over the span since the last reading). */
const SAMPLE_EVERY_MS = 250;

/**
 * The worker begins on a message while its gateway stores it (Worker.begin)
 * only while this event loop has room. Beginning early takes the writes'
 * time off a reply when messages wait on the disk, but costs the loop a few
 * µs per message (the message crossing to the worker thread, a second
 * decoding there): when the loop is the bottleneck, no reply comes sooner
 * for it, and capacity falls (saturate, issue 15: 146 → 161 µs of CPU per
 * message, 10,044 → 9,429 msg/s). So below EARLY_BUSY_ABOVE of the last
 * SAMPLE_EVERY_MS busy, messages are begun early; above it, they wait for
 * the log as before. Calling off always goes through.
 */
export class LoopRoom implements EarlyStart {
  private room = true;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly worker: EarlyStart,
    /** The loop's busy share (0 to 1) since it was last asked. */
    private readonly busyShare: () => number = loopBusyShare(),
  ) {}

  start(): void {
    this.timer = setInterval(() => this.sample(), SAMPLE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  sample(): void {
    this.room = this.busyShare() <= EARLY_BUSY_ABOVE;
  }

  begin(event: Event, upload?: Buffer): void {
    if (this.room) this.worker.begin(event, upload);
  }

  callOff(messageId: string, conversationId: string): void {
    this.worker.callOff(messageId, conversationId);
  }
}

/** What the loop's busy share is computed from: its busy and idle milliseconds so far (performance.eventLoopUtilization). */
export type LoopTimes = () => { active: number; idle: number };

/**
 * This thread's event loop: the share of the time it was busy since the last
 * call (its busy milliseconds over busy and idle ones, both since then).
 */
export function loopBusyShare(times: LoopTimes = () => performance.eventLoopUtilization()): () => number {
  let last = times();
  return () => {
    const now = times();
    const active = now.active - last.active;
    const idle = now.idle - last.idle;
    last = now;
    return active + idle > 0 ? active / (active + idle) : 0;
  };
}
