import { randomUUID } from 'node:crypto';
import { status, type ClientDuplexStream, type Metadata, type StatusObject } from '@grpc/grpc-js';
import { ServerFrame, type BotResponse, type ClientFrame, type UserMessage, type Welcome } from '../gen/chatflow/v1/chat';
import type { ChatServiceClient } from '../gen/chatflow/v1/chat';
import { describeStatus, retryAfterMs } from './connection';
import { saveMedia } from './media';
import type { Output } from './output';
import { ReplyBoard, type Entry } from './replies';
import { formatTime } from './render';

export interface SessionOptions {
  server: string;
  insecure: boolean;
  saveDir: string;
  json: boolean;
  timeZone: string;
  resumeAfter?: number;
  interactive: boolean;
  /**
   * A run whose result a script reads (--send/--file, piped stdin): every
   * message must get its reply, or the exit code is 1.
   */
  strict: boolean;
  /** Said after an UNAUTHENTICATED status when the token was minted here. */
  authHint?: string;
}

/**
 * One Chat stream as the CLI sees it: sends messages, shows each reply as one
 * block under the label of its message (however replies interleave), tracks
 * which messages still wait for a reply, saves media replies.
 */
export class CliChatSession {
  readonly welcomed: Promise<Welcome | undefined>;
  readonly ended: Promise<StatusObject>;
  welcome?: Welcome;
  /** Local failures (downloads) that should make a scripted run exit non-zero. */
  problems = 0;
  private readonly call: ClientDuplexStream<ClientFrame, ServerFrame>;
  /** Outstanding messages by client_message_id; the server's message_id maps onto them once accepted. */
  private readonly pending = new Map<string, () => void>();
  private readonly cmidOf = new Map<string, string>();
  private readonly work = new Set<Promise<unknown>>();
  private readonly pings = new Map<number, number>();
  private lastSeq = 0;
  private cancelled = false;
  private halfClosed = false;
  readonly board = new ReplyBoard();

  constructor(client: ChatServiceClient, md: Metadata, private readonly opts: SessionOptions, private readonly printer: Output) {
    this.lastSeq = opts.resumeAfter ?? 0;
    this.call = client.chat(md);
    let onWelcome!: (w: Welcome | undefined) => void;
    this.welcomed = new Promise((r) => (onWelcome = r));
    this.ended = new Promise((resolve) => {
      this.call.on('error', () => undefined); // the status event carries the same information
      this.call.on('status', (s: StatusObject) => {
        onWelcome(undefined);
        for (const done of this.pending.values()) done();
        resolve(s);
      });
    });
    this.call.on('data', (frame: ServerFrame) => {
      if (frame.frame?.$case === 'welcome') {
        this.welcome = frame.frame.welcome;
        if (opts.resumeAfter === undefined) this.lastSeq = this.welcome.lastSeq;
        onWelcome(this.welcome);
      }
      this.onFrame(frame);
    });
  }

  get outstanding(): number {
    return this.pending.size;
  }

  /** Sends a message; the promise settles when its reply (or error) has been shown and saved. */
  send(content: UserMessage['content']): Promise<void> {
    const clientMessageId = randomUUID();
    const done = new Promise<void>((resolve) => this.pending.set(clientMessageId, resolve));
    this.board.add(clientMessageId, content);
    if (!this.opts.json) this.printer.changed(this.board);
    this.call.write({ frame: { $case: 'message', message: { clientMessageId, content } } });
    return done;
  }

  ping(): void {
    const nonce = this.pings.size + 1 + Math.floor(Math.random() * 1e6);
    this.pings.set(nonce, Date.now());
    this.call.write({ frame: { $case: 'ping', ping: { nonce } } });
  }

  /** Half-closes: the server ends the stream once every accepted message has its reply. */
  halfClose(): void {
    if (this.halfClosed) return;
    this.halfClosed = true;
    this.call.end();
  }

  cancel(): void {
    this.cancelled = true;
    this.call.cancel();
  }

  /** Waits for the end of the stream and for pending downloads; prints the status; returns the exit code. */
  async finish(): Promise<number> {
    const s = await this.ended;
    await Promise.allSettled([...this.work]);
    this.printer.close();
    if (this.opts.json) this.json({ status: { code: s.code, name: status[s.code], details: s.details, retryAfterMs: retryAfterMs(s) } });
    const unanswered = this.summary();
    if (s.code === status.OK) {
      if (!this.opts.json) this.printer.line('disconnected');
      return this.opts.strict && unanswered ? 1 : this.problems > 0 ? 1 : 0;
    }
    if (s.code === status.CANCELLED && this.cancelled) {
      this.printer.error('stopped');
      return 130;
    }
    let text = describeStatus(s, this.opts.server, this.opts.insecure);
    if (s.code === status.UNAUTHENTICATED && this.opts.authHint) text += `\n${this.opts.authHint}`;
    if (this.welcome && s.code !== status.DEADLINE_EXCEEDED) {
      text += `\nto pick up where you left off: --conversation ${this.welcome.conversationId} --resume-after ${this.lastSeq} --replaces-session ${this.welcome.sessionId}`;
    }
    this.printer.error(text);
    return 1;
  }

  /** After the stream: the messages that failed or got no reply, one line each (stderr). True when there are any. */
  private summary(): boolean {
    const sent = this.board.entries.filter((e) => e.n > 0);
    const bad = sent.filter((e) => e.state !== 'answered');
    if (bad.length === 0 || this.opts.json) return bad.length > 0;
    const why = (e: Entry) => (e.state === 'failed' ? `failed: ${e.error}` : e.seq !== undefined ? `no reply (accepted, seq ${e.seq})` : 'no reply (not accepted)');
    this.printer.error(`${bad.length} of ${sent.length} message${sent.length === 1 ? '' : 's'} not answered:\n${bad.map((e) => `  [${e.n}] ${e.question}: ${why(e)}`).join('\n')}`);
    return true;
  }

  private json(obj: unknown): void {
    this.printer.line(JSON.stringify(obj));
  }

  private settle(key: string): void {
    const cmid = this.cmidOf.get(key) ?? key;
    this.pending.get(cmid)?.();
    this.pending.delete(cmid);
  }

  private onFrame(frame: ServerFrame): void {
    const f = frame.frame;
    if (!f) return;
    if (this.opts.json) this.json(ServerFrame.toJSON(frame));
    const p = this.printer;
    const human = !this.opts.json;
    switch (f.$case) {
      case 'welcome': {
        const w = f.welcome;
        if (!human) break;
        const resumed = this.opts.resumeAfter !== undefined ? `, replaying after seq ${this.opts.resumeAfter}` : '';
        p.line(`connected as ${w.clientId}: conversation ${w.conversationId}${w.lastSeq ? ` (continued, last seq ${w.lastSeq}${resumed})` : ''}`);
        p.line(`local time ${w.localTime} (${w.timeZone}), session ${w.sessionId}`);
        if (this.opts.interactive) p.line(`type a message, or /help; send something within ${Math.round(w.firstMessageDeadlineMs / 1000)} s`);
        break;
      }
      case 'accepted': {
        const a = f.accepted;
        this.cmidOf.set(a.messageId, a.clientMessageId);
        this.seen(a.seq);
        const e = this.board.accepted(a);
        if (human) p.changed(this.board);
        if (a.duplicate) {
          if (human) p.line(`[${e?.n ?? '?'}] already accepted earlier (seq ${a.seq})`);
          this.settle(a.clientMessageId);
        }
        break;
      }
      case 'delta':
        this.board.delta(f.delta.inReplyTo, f.delta.textDelta);
        if (human) p.changed(this.board);
        break;
      case 'transcript':
        if (human) p.line(`heard: "${f.transcript.text}"`);
        break;
      case 'response':
        this.onResponse(f.response);
        break;
      case 'error': {
        this.seen(f.error.seq);
        const e = this.board.error(f.error);
        if (human) p.done(this.board, this.board.finish(e));
        this.settle(f.error.inReplyTo);
        break;
      }
      case 'pong': {
        const sent = this.pings.get(f.pong.nonce);
        this.pings.delete(f.pong.nonce);
        const rtt = sent === undefined ? '' : `round trip ${Date.now() - sent} ms, `;
        if (human) p.line(`pong: ${rtt}server time ${formatTime(f.pong.serverTime, this.opts.timeZone)}`);
        break;
      }
    }
  }

  /** The reply's block is shown once its media are saved (the block names the files). */
  private onResponse(r: BotResponse): void {
    this.seen(r.seq);
    const e = this.board.response(r);
    if (!this.opts.json) this.printer.changed(this.board);
    const saves = [
      r.voice?.url ? this.save(e, 'voice', r.voice, r.messageId, '.wav') : undefined,
      r.image?.url ? this.save(e, 'image', r.image, r.messageId, '.png') : undefined,
    ];
    const all = Promise.allSettled(saves).then(() => {
      if (!this.opts.json) this.printer.done(this.board, this.board.finish(e));
      this.settle(r.inReplyTo);
    });
    this.track(all);
  }

  private save(e: Entry, kind: 'voice' | 'image', media: NonNullable<BotResponse['voice']>, messageId: string, ext: string): Promise<void> {
    return saveMedia(media, messageId, this.opts.saveDir, ext).then(
      (path) => {
        if (this.opts.json) this.json({ saved: { messageId, kind, path } });
        else e.notes.push(`${kind} saved to ${path}`);
      },
      (err: Error) => {
        this.problems++;
        if (this.opts.json) this.json({ saved: { messageId, kind, error: err.message } });
        else e.notes.push(`${kind} not saved: ${err.message}`);
      },
    );
  }

  private track(p: Promise<unknown>): void {
    this.work.add(p);
    void p.finally(() => this.work.delete(p));
  }

  private seen(seq: number): void {
    if (seq > this.lastSeq) this.lastSeq = seq;
  }
}
