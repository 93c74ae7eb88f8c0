import type { Metadata, ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import type { ServerFrame } from '../gen/chatflow/v1/chat';
import { ChatFlowError } from '../domain/errors';
import { domainStatus } from './status';

export interface EndStatus {
  code: number;
  details: string;
  metadata?: Metadata;
}

/** Either kind of server-streaming call. */
export type WritableCall = ServerWritableStream<any, ServerFrame> | ServerDuplexStream<any, ServerFrame>;

export interface FlowOptions {
  /** Frames queued above which the session stops reading the client's input. */
  highWater: number;
  /** Frames queued at or below which reading resumes. */
  lowWater: number;
  /** A client that takes none of the queued frames for this long is cut off. */
  stallMs: number;
}

export interface FlowHandlers {
  /** The client read nothing for `stallMs` while frames waited; the stream ends with `error`. */
  onStalled(error: ChatFlowError): void;
  /** The backlog crossed `highWater` (true) or fell back to `lowWater` (false). */
  onPressure?(high: boolean): void;
}

export const DEFAULT_FLOW: FlowOptions = { highWater: 512, lowWater: 128, stallMs: 60_000 };

/**
 * The write half of a stream. Frames are queued and written respecting
 * backpressure (`write()` false → wait for 'drain'). A client that reads is
 * never cut off: above `highWater` the session is told to stop reading its
 * input (HTTP/2 flow control then slows the client down), and only a client
 * that takes nothing for `stallMs` is cut off.
 */
export class Outbound {
  private queue: ServerFrame[] = [];
  private waitingDrain = false;
  private ended = false;
  private pendingEnd?: EndStatus | null;
  private high = false;
  private stallTimer?: NodeJS.Timeout;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly call: WritableCall,
    private readonly handlers: FlowHandlers,
    private readonly flow: FlowOptions = DEFAULT_FLOW,
  ) {}

  /** True while frames wait for the transport's 'drain' (a write now is queued). */
  get waiting(): boolean {
    return this.waitingDrain;
  }

  /** Frames written but not yet taken by the transport. */
  get backlog(): number {
    return this.queue.length;
  }

  write(frame: ServerFrame): void {
    if (this.ended || this.pendingEnd !== undefined) return;
    if (this.waitingDrain) {
      this.queue.push(frame);
      if (!this.high && this.queue.length >= this.flow.highWater) {
        this.high = true;
        this.handlers.onPressure?.(true);
      }
      return;
    }
    this.push(frame);
  }

  /** Resolves once the backlog is at or below the low-water mark (or the stream ended). */
  drained(): Promise<void> {
    if (this.ended || this.queue.length <= this.flow.lowWater) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  private push(frame: ServerFrame): void {
    if (this.call.write(frame)) return;
    this.waitingDrain = true;
    this.armStall();
    this.call.once('drain', () => this.onDrain());
  }

  private onDrain(): void {
    this.waitingDrain = false;
    clearTimeout(this.stallTimer);
    while (this.queue.length > 0 && !this.waitingDrain) this.push(this.queue.shift()!);
    if (this.queue.length <= this.flow.lowWater) {
      if (this.high) {
        this.high = false;
        this.handlers.onPressure?.(false);
      }
      for (const w of this.drainWaiters.splice(0)) w();
    }
    if (!this.waitingDrain && this.pendingEnd !== undefined) this.finish(this.pendingEnd);
  }

  private armStall(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => {
      if (!this.waitingDrain || this.ended) return;
      const err = stalled(this.flow.stallMs);
      this.handlers.onStalled(err);
      this.finish(domainStatus(err)); // also when the session had already asked for an OK end behind the queue
    }, this.flow.stallMs);
    this.stallTimer.unref();
  }

  /** Ends the stream after the queued frames, with OK (null) or an error status. */
  end(status: EndStatus | null): void {
    if (this.ended || this.pendingEnd !== undefined) return;
    if (this.waitingDrain && status === null) {
      this.pendingEnd = status;
      return;
    }
    this.finish(status);
  }

  private finish(status: EndStatus | null): void {
    if (this.ended) return;
    this.ended = true;
    this.queue = [];
    clearTimeout(this.stallTimer);
    for (const w of this.drainWaiters.splice(0)) w();
    if (this.call.cancelled) return;
    if (status === null) this.call.end();
    else this.call.emit('error', { code: status.code, details: status.details, metadata: status.metadata });
  }
}

function stalled(stallMs: number): ChatFlowError {
  return new ChatFlowError('RESOURCE_EXHAUSTED', `the client read nothing for ${stallMs} ms while replies waited; reconnect with x-resume-after to get them`);
}
