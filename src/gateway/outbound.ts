import type { Metadata, ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import type { ServerFrame } from '../gen/chatflow/v1/chat';

export interface EndStatus {
  code: number;
  details: string;
  metadata?: Metadata;
}

/** Either kind of server-streaming call. */
export type WritableCall = ServerWritableStream<any, ServerFrame> | ServerDuplexStream<any, ServerFrame>;

/**
 * The write half of a stream. Frames are queued and written respecting
 * backpressure (`write()` false → wait for 'drain'); a client too slow to
 * read `maxQueued` frames is cut off rather than letting memory grow.
 */
export class Outbound {
  private queue: ServerFrame[] = [];
  private waitingDrain = false;
  private ended = false;
  private pendingEnd?: EndStatus | null;

  constructor(
    private readonly call: WritableCall,
    private readonly onOverflow: () => void,
    private readonly maxQueued = 10_000,
  ) {}

  get isEnded(): boolean {
    return this.ended;
  }

  write(frame: ServerFrame): void {
    if (this.ended || this.pendingEnd !== undefined) return;
    if (this.waitingDrain) {
      if (this.queue.length >= this.maxQueued) {
        this.onOverflow();
        return;
      }
      this.queue.push(frame);
      return;
    }
    this.push(frame);
  }

  private push(frame: ServerFrame): void {
    if (!this.call.write(frame)) {
      this.waitingDrain = true;
      this.call.once('drain', () => {
        this.waitingDrain = false;
        while (this.queue.length > 0 && !this.waitingDrain) this.push(this.queue.shift()!);
        if (!this.waitingDrain && this.pendingEnd !== undefined) this.finish(this.pendingEnd);
      });
    }
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
    if (this.call.cancelled) return;
    if (status === null) this.call.end();
    else this.call.emit('error', { code: status.code, details: status.details, metadata: status.metadata });
  }
}
