import { randomUUID } from 'node:crypto';
import { Metadata, status, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { ServerFrame, type BotResponse, type ClientFrame, type UserMessage, type Welcome } from '../gen/chatflow/v1/chat';
import type { ChatServiceClient } from '../gen/chatflow/v1/chat';
import { describeStatus, retryAfterMs } from './connection';
import { saveMedia } from './media';
import type { Output } from './output';
import { decideReconnect } from './reconnect';
import { ReplyBoard, type Entry } from './replies';
import { formatTime } from './render';

export interface SessionOptions {
  server: string;
  insecure: boolean;
  tls: boolean;
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
  /** How long a session that was in keeps trying to come back after its connection is lost (--reconnect-for); 0: never. */
  reconnectForMs: number;
}

/**
 * A chat session as the CLI sees it: sends messages, shows each reply as one
 * block under the label of its message (however replies interleave), tracks
 * which messages still wait for a reply, saves media replies. Its Chat stream
 * comes back by itself when the connection is lost (see decideReconnect):
 * resumed after the last event seen, taking over the old stream if the server
 * still holds it, messages not yet accepted sent again under their ids.
 */
export class CliChatSession {
  /** The first Welcome; undefined when the first stream ended without one. */
  readonly welcomed: Promise<Welcome | undefined>;
  /** The end of the session: of its last stream, once no other follows. */
  readonly ended: Promise<StatusObject>;
  /** The latest Welcome. */
  welcome?: Welcome;
  /** Local failures (downloads) that should make a scripted run exit non-zero. */
  problems = 0;
  private call: ClientDuplexStream<ClientFrame, ServerFrame>;
  /** The current stream was welcomed (messages go out on it). */
  private connected = false;
  private onWelcome!: (w: Welcome | undefined) => void;
  private endWith!: (s: StatusObject) => void;
  /** Set while waiting to open the stream again. */
  private reconnectTimer?: NodeJS.Timeout;
  private lostAt = 0;
  private failedAttempts = 0;
  /** Streams welcomed so far (more than one: it came back). */
  private streams = 0;
  /** Interactive, back from a loss, closed by the first-message deadline with nothing outstanding: the next message reconnects. */
  private idle = false;
  /** Outstanding messages by client_message_id; the server's message_id maps onto them once accepted. */
  private readonly pending = new Map<string, () => void>();
  /** Messages sent (or to send) that the server has not accepted yet: sent again, same id, on the next stream. */
  private readonly unaccepted = new Map<string, UserMessage['content']>();
  private readonly cmidOf = new Map<string, string>();
  private readonly work = new Set<Promise<unknown>>();
  private readonly pings = new Map<number, number>();
  private lastSeq = 0;
  private cancelled = false;
  private halfClosed = false;
  readonly board = new ReplyBoard();

  constructor(
    private readonly client: ChatServiceClient,
    private readonly md: Metadata,
    private readonly opts: SessionOptions,
    private readonly printer: Output,
  ) {
    this.lastSeq = opts.resumeAfter ?? 0;
    this.welcomed = new Promise((r) => (this.onWelcome = r));
    this.ended = new Promise((r) => (this.endWith = r));
    this.call = this.open(md);
  }

  get outstanding(): number {
    return this.pending.size;
  }

  /** Sends a message (once connected again, if the connection is lost); settles when its reply (or error) has been shown and saved. */
  send(content: UserMessage['content']): Promise<void> {
    const clientMessageId = randomUUID();
    const done = new Promise<void>((resolve) => this.pending.set(clientMessageId, resolve));
    this.board.add(clientMessageId, content);
    if (!this.opts.json) this.printer.changed(this.board);
    this.unaccepted.set(clientMessageId, content);
    if (this.connected) this.write(clientMessageId, content);
    else if (this.idle) this.reopen();
    return done;
  }

  ping(): void {
    if (!this.connected) return this.printer.error(this.idle ? 'not connected: your next message reconnects' : 'not connected: reconnecting');
    const nonce = this.pings.size + 1 + Math.floor(Math.random() * 1e6);
    this.pings.set(nonce, Date.now());
    this.call.write({ frame: { $case: 'ping', ping: { nonce } } });
  }

  /** Half-closes: the server ends the stream once every accepted message has its reply (after coming back, if it is away). */
  halfClose(): void {
    if (this.halfClosed) return;
    this.halfClosed = true;
    if (this.connected) this.call.end();
    else if ((this.reconnectTimer || this.idle) && this.pending.size === 0) this.endHere(status.OK, 'disconnected');
  }

  cancel(): void {
    this.cancelled = true;
    if (this.reconnectTimer || this.idle) this.endHere(status.CANCELLED, 'stopped while reconnecting');
    else this.call.cancel();
  }

  /** Opens a Chat stream; only the latest one's frames and end count. */
  private open(md: Metadata): ClientDuplexStream<ClientFrame, ServerFrame> {
    const call = this.client.chat(md);
    call.on('error', () => undefined); // the status event carries the same information
    call.on('status', (s: StatusObject) => {
      if (call === this.call) this.streamEnded(s);
    });
    call.on('data', (frame: ServerFrame) => {
      if (call !== this.call) return;
      if (frame.frame?.$case === 'welcome') this.welcomedOn(frame.frame.welcome);
      this.onFrame(frame);
    });
    return call;
  }

  private welcomedOn(w: Welcome): void {
    const first = this.welcome === undefined;
    this.welcome = w;
    this.connected = true;
    this.failedAttempts = 0;
    this.streams++;
    if (first) {
      if (this.opts.resumeAfter === undefined) this.lastSeq = w.lastSeq;
      this.onWelcome(w);
      return;
    }
    this.printer.status(undefined);
    // Not accepted on the lost stream (or not sent at all): again, under the same id (the server processes a resend once).
    for (const [clientMessageId, content] of this.unaccepted) this.write(clientMessageId, content);
    if (this.halfClosed) this.call.end();
  }

  private write(clientMessageId: string, content: UserMessage['content']): void {
    this.call.write({ frame: { $case: 'message', message: { clientMessageId, content } } });
  }

  /** A stream ended: the session ends with it, or the stream comes back (decideReconnect). */
  private streamEnded(s: StatusObject): void {
    const wasConnected = this.connected;
    this.connected = false;
    if (wasConnected) this.lostAt = Date.now();
    const next = decideReconnect({
      code: s.code,
      details: s.details,
      retryAfterMs: retryAfterMs(s),
      everWelcomed: this.welcome !== undefined,
      cancelled: this.cancelled,
      attempts: this.failedAttempts,
      lostForMs: Date.now() - this.lostAt,
      windowMs: this.opts.reconnectForMs,
      backFromLoss: wasConnected && this.streams > 1,
      owed: this.pending.size > 0,
      interactive: this.opts.interactive,
      leaving: this.halfClosed,
    });
    switch (next.type) {
      case 'end':
        return this.end(s);
      case 'left':
        return this.endHere(status.OK, 'disconnected');
      case 'reopen':
        return this.reopen();
      case 'idle':
        this.idle = true;
        return this.printer.line(`the server closed the connection (${s.details}); your next message reconnects`);
    }
    const attempt = ++this.failedAttempts;
    if (this.opts.json) this.json({ reconnecting: { code: s.code, name: status[s.code], details: s.details, retryAfterMs: next.inMs, attempt } });
    else this.printer.status(`connection lost (${describeStatus(s)}) — reconnecting in ${Math.max(1, Math.round(next.inMs / 1000))} s, attempt ${attempt} (Ctrl-C to stop)`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.reopen();
    }, next.inMs);
  }

  /** Opens the stream again where this session was: its conversation, the last event it saw, and the stream it lost (which the server may still hold). */
  private reopen(): void {
    this.idle = false;
    const w = this.welcome!;
    const md = this.md.clone();
    md.set('x-conversation-id', w.conversationId);
    md.set('x-resume-after', String(this.lastSeq));
    md.set('x-replaces-session', w.sessionId);
    this.call = this.open(md);
  }

  /** Ends the session between streams (no stream's status to end with). */
  private endHere(code: status, details: string): void {
    this.end({ code, details, metadata: new Metadata() });
  }

  private end(s: StatusObject): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.onWelcome(undefined);
    for (const done of this.pending.values()) done();
    this.endWith(s);
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
    let text = describeStatus(s, this.opts);
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
    this.unaccepted.delete(cmid);
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
        if (this.streams > 1) {
          p.line(`reconnected: conversation ${w.conversationId}, replaying after seq ${this.lastSeq}, session ${w.sessionId}`);
          break;
        }
        const resumed = this.opts.resumeAfter !== undefined ? `, replaying after seq ${this.opts.resumeAfter}` : '';
        p.line(`connected as ${w.clientId}: conversation ${w.conversationId}${w.lastSeq ? ` (continued, last seq ${w.lastSeq}${resumed})` : ''}`);
        p.line(`local time ${w.localTime} (${w.timeZone}), session ${w.sessionId}`);
        if (this.opts.interactive) p.line(`type a message, or /help; send something within ${Math.round(w.firstMessageDeadlineMs / 1000)} s`);
        break;
      }
      case 'accepted': {
        const a = f.accepted;
        this.unaccepted.delete(a.clientMessageId);
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
