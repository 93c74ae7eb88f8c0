import type { Logger } from 'pino';
import { encode } from '../encode';
import type { EventLog } from '../eventlog/port';
import { EarlyNote } from '../gen/chatflow/bus/v1/early';
import type { Event } from '../gen/chatflow/v1/events';
import type { Bus, Subscription } from './port';

/**
 * Early starts across processes (issue 15). On Kafka, a worker sees a message
 * only once its gateway has stored its upload and the log has acknowledged
 * and handed out its event: ~5 ms for a text and ~15 for a voice or video
 * message on the stack before any work. The gateway tells the worker that
 * holds the message's partition at once, on a bus subject of that partition,
 * and the worker begins on it (Worker.begin): nothing of that work leaves the
 * worker before the log hands the message out and its claim is the worker's,
 * and it is called off when the message was not stored (`callOff`) or did not
 * come. The notes are at-most-once, like the bus: a note lost is a message
 * begun when the log hands it out, as before.
 */

/** The largest upload sent with its note: NATS refuses a message over its max_payload (1 MiB by default) whole. */
export const EARLY_NOTE_MAX_UPLOAD_BYTES = 1024 * 1024 - 64 * 1024;

/** Subject of the early notes for one partition of the log's conversations (the topic's prefix keeps logs sharing a bus apart). */
export function earlySubject(logPrefix: string, partition: number): string {
  return `chatflow.early.${Buffer.from(`${logPrefix}conversations`, 'utf8').toString('base64url') || '_'}.${partition}`;
}

/** The gateway's side: each message's note to the subject of its partition (GatewayDeps.early). */
export class BusEarlyStart {
  constructor(
    private readonly bus: Pick<Bus, 'publish' | 'connected'>,
    private readonly log: Required<Pick<EventLog, 'partitionOf'>>,
    private readonly logPrefix: string,
    private readonly logger: Logger,
  ) {}

  begin(event: Event, upload?: Buffer): void {
    // Too large for one bus message: begun when the log hands it out, as without a note. Nor while the bus has lost
    // its server: its client would hold every note (and its upload) in memory until it is back.
    if ((upload && upload.length > EARLY_NOTE_MAX_UPLOAD_BYTES) || this.bus.connected?.() === false) return;
    this.send(event.conversationId, { note: { $case: 'begin', begin: { event, upload: upload ?? EMPTY } } });
  }

  callOff(messageId: string, conversationId: string): void {
    // Without its server the note would wait in memory: the work begun is called off by itself (not handed out in time).
    if (this.bus.connected?.() === false) return;
    this.send(conversationId, { note: { $case: 'callOff', callOff: { messageId } } });
  }

  private send(conversationId: string, note: EarlyNote): void {
    const subject = earlySubject(this.logPrefix, this.log.partitionOf('conversations', conversationId));
    // A note that does not go out costs only the head start: never the message.
    this.bus.publish(subject, encode(EarlyNote, note)).catch((err: unknown) => this.logger.debug({ err, subject }, 'early note not sent'));
  }
}

/** Where a worker's early notes go (Worker.begin / Worker.callOff). */
export interface EarlyTarget {
  begin(event: Event, upload?: Buffer): void;
  callOff(messageId: string): void;
  /** False when `begin` would begin nothing now (its budget for early work is taken): the note is not even decoded. */
  roomToBegin?(): boolean;
}

/** The worker's side: listens on the subjects of the partitions it holds, and only those (follow). */
export class EarlyNotes {
  private readonly subscriptions = new Map<number, Subscription>();

  constructor(
    private readonly bus: Pick<Bus, 'subscribe'>,
    private readonly logPrefix: string,
    private readonly target: EarlyTarget,
    private readonly logger: Logger,
  ) {}

  /** The partitions held now (ConsumeOptions.onAssigned): listens on the new ones, stops on those gone. */
  follow(partitions: readonly number[]): void {
    const now = new Set(partitions);
    for (const [p, sub] of this.subscriptions) {
      if (now.has(p)) continue;
      sub.unsubscribe();
      this.subscriptions.delete(p);
    }
    for (const p of now) {
      if (!this.subscriptions.has(p)) this.subscriptions.set(p, this.bus.subscribe(earlySubject(this.logPrefix, p), (payload) => this.receive(payload)));
    }
  }

  close(): void {
    this.follow([]);
  }

  private receive(payload: Uint8Array): void {
    // A worker at its budget (saturation: every note) drops a begin unread; a note holds one field, so its first byte
    // is that field's tag. A call-off always goes through: it may be for work begun before.
    if (payload[0] === BEGIN_TAG && this.target.roomToBegin?.() === false) return;
    let note: EarlyNote;
    try {
      note = EarlyNote.decode(payload);
    } catch (err) {
      this.logger.warn({ err, bytes: payload.length }, 'an early note that is not one was dropped');
      return;
    }
    const n = note.note;
    if (n?.$case === 'begin' && n.begin.event) {
      // Copied: the bus may read its next message into the buffer this one came in.
      const upload = n.begin.upload.length > 0 ? Buffer.from(n.begin.upload) : undefined;
      this.target.begin(n.begin.event, upload);
    } else if (n?.$case === 'callOff') {
      this.target.callOff(n.callOff.messageId);
    }
  }
}

const EMPTY = Buffer.alloc(0);
/** EarlyNote.begin: field 1, wire type 2 (length-delimited). */
const BEGIN_TAG = (1 << 3) | 2;
