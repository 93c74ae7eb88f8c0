import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { ChatService, type ServerFrame, type UserMessageSchema, type Welcome } from './gen/chatflow/v1/chat_pb';
import { HistoryService } from './gen/chatflow/v1/history_pb';
import { authHeaders, type Identity } from './auth';
import { lastSessionOf, rememberSession } from './resume';
import { onSendRefused } from './send-outcome';

export type Content = MessageInitShape<typeof UserMessageSchema>['content'];

export type ConnState =
  /** Not connected, nothing scheduled (a send reconnects). */
  | 'idle'
  | 'connecting'
  | 'connected'
  /** A retry is scheduled (server full, connection lost). */
  | 'waiting'
  /** Refused in a way retrying cannot fix (another tab, bad token, bad zone). */
  | 'refused';

/** What the page shows above the message list; `retryAt` drives a countdown. */
export interface Notice {
  kind: 'full' | 'duplicate' | 'auth' | 'refused' | 'lost' | 'idle' | 'info';
  text: string;
  retryAt?: number;
}

export interface SessionEvents {
  state(state: ConnState, welcome?: Welcome): void;
  notice(notice: Notice | undefined): void;
  frame(frame: ServerFrame, replayed: boolean): void;
  /** A message the server refused (or that could not be delivered after retries). */
  sendFailed(clientMessageId: string, text: string, retryable: boolean): void;
}

interface Outgoing {
  clientMessageId: string;
  content: Content;
  inFlight: boolean;
}

/** Default wait when the server is full and says nothing (it normally sends retry-after-ms). */
const FULL_RETRY_MS = 5000;
const MAX_BACKOFF_MS = 15_000;
/** How long a resume keeps trying while the server still holds the lost stream, when it holds silent ones forever. */
const HELD_RETRY_MS = 60_000;
/** Pings per silence limit (the server closes a stream silent that long): room for a late timer in a background tab. */
const PINGS_PER_LIMIT = 4;

/**
 * One browser session over gRPC-Web: `Connect` opens the server stream,
 * `Send` posts each message on it. Reconnects by itself when the stream is
 * lost or the server is full (using `retry-after-ms`), resuming the same
 * conversation with `x-resume-after` = the last event seq seen, and resends
 * what was not yet acknowledged with the same client_message_id (the server
 * processes a resend once).
 */
export class PageChatSession {
  readonly chat: Client<typeof ChatService>;
  readonly history: Client<typeof HistoryService>;
  private abort?: AbortController;
  private retryTimer?: number;
  private attempts = 0;
  private sessionId?: string;
  private welcome?: Welcome;
  private readonly outbox = new Map<string, Outgoing>();
  private readonly answered = new Set<string>();
  /** When this page last closed its own stream: the server may not have freed the slot yet. */
  private closedOwnAt = 0;
  /** Set while coming back from a lost stream (not a first connect). */
  private resuming = false;
  /** When the last welcomed stream was lost. */
  private lostAt = 0;
  /** The session of the stream this tab last had (before a reload too), until it is welcomed again: named to take it over (x-replaces-session). */
  private previousSessionId?: string;
  /** The server's silence limit (Welcome.silence_limit_ms): it lets go of a stream silent that long. 0: never. */
  private silenceLimitMs = 0;
  private pingTimer?: number;
  /** The upload being posted, if any (see post). */
  private uploads: Promise<void> = Promise.resolve();
  state: ConnState = 'idle';
  conversationId?: string;
  lastSeq = 0n;

  constructor(
    apiUrl: string,
    public identity: Identity,
    public timeZone: string,
    private readonly events: SessionEvents,
  ) {
    const transport = createGrpcWebTransport({ baseUrl: apiUrl, useBinaryFormat: true });
    this.chat = createClient(ChatService, transport);
    this.history = createClient(HistoryService, transport);
    // Reloaded: the stream this tab had may still be held by the server (it died without a word).
    this.previousSessionId = lastSessionOf(identity.clientId);
  }

  get maxMediaBytes(): number | undefined {
    return this.welcome ? Number(this.welcome.maxMediaBytes) : undefined;
  }

  headers(): Record<string, string> {
    return { ...authHeaders(this.identity), 'x-timezone': this.timeZone };
  }

  /**
   * A Send's headers. One that carries no upload (a text that fits the server's 64 KiB for such requests, a ping)
   * says so (`x-no-upload`), so that the server reads it at once rather than after the uploads being read (its own
   * and other clients').
   */
  private sendHeaders(upload: boolean): Record<string, string> {
    return upload ? this.headers() : { ...this.headers(), 'x-no-upload': 'true' };
  }

  /** Opens the stream (again); continues `conversationId` when set. */
  connect(): void {
    this.clearRetry();
    if (this.sessionId) this.previousSessionId = this.sessionId;
    if (this.abort) {
      this.abort.abort();
      this.closedOwnAt = Date.now();
    }
    void this.run();
  }

  /** Closes the stream: the server frees the slot at once. */
  disconnect(): void {
    this.clearRetry();
    if (this.abort) {
      this.abort.abort();
      this.closedOwnAt = Date.now();
    }
    this.abort = undefined;
    this.sessionId = undefined;
    this.previousSessionId = undefined;
    this.resuming = false;
    this.setState('idle');
    this.events.notice(undefined);
  }

  /** Switches to another conversation (from the history panel) and reconnects to it. */
  continueConversation(conversationId: string, lastSeq: bigint): void {
    this.conversationId = conversationId;
    this.lastSeq = lastSeq;
    this.answered.clear();
    this.connect();
  }

  /** Starts a fresh conversation on the next connect. */
  newConversation(): void {
    this.conversationId = undefined;
    this.lastSeq = 0n;
    this.answered.clear();
  }

  /** Queues a message; it is posted now if connected, else after the next Welcome. */
  send(content: Content, clientMessageId = newId()): string {
    const item: Outgoing = { clientMessageId, content, inFlight: false };
    this.outbox.set(clientMessageId, item);
    if (this.state === 'connected') void this.post(item);
    else if (this.state === 'idle' || this.state === 'refused') this.connect();
    return clientMessageId;
  }

  /** Sends a failed message again, with the same id. */
  retry(clientMessageId: string, content: Content): void {
    this.send(content, clientMessageId);
  }

  private async run(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    this.sessionId = undefined;
    this.setState('connecting');
    const headers: Record<string, string> = this.headers();
    if (this.conversationId) {
      headers['x-conversation-id'] = this.conversationId;
      // Replies after this seq that we have not seen are replayed first.
      headers['x-resume-after'] = this.lastSeq.toString();
    }
    // The server may still hold the stream this page lost (it cannot tell a page that went away without a word):
    // naming it, the page takes it over at once instead of waiting for the server to let go of it.
    if (this.previousSessionId) headers['x-replaces-session'] = this.previousSessionId;
    let welcomed = false;
    try {
      for await (const frame of this.chat.connect({}, { headers, signal: abort.signal })) {
        if (abort.signal.aborted) return;
        if (frame.frame.case === 'welcome') {
          welcomed = true;
          this.onWelcome(frame.frame.value);
        }
        this.track(frame);
        if (frame.frame.case === 'response') {
          // A replayed reply already shown (or shown from history) is not shown twice.
          if (this.answered.has(frame.frame.value.messageId)) continue;
          this.answered.add(frame.frame.value.messageId);
        }
        this.events.frame(frame, false);
      }
      if (!abort.signal.aborted) this.lost(new ConnectError('the server ended the stream', Code.Unavailable), welcomed);
    } catch (e) {
      if (abort.signal.aborted) return;
      this.lost(ConnectError.from(e), welcomed);
    }
  }

  private onWelcome(w: Welcome): void {
    this.welcome = w;
    this.previousSessionId = undefined;
    this.silenceLimitMs = Number(w.silenceLimitMs);
    this.resuming = false;
    this.sessionId = w.sessionId;
    rememberSession(this.identity.clientId, w.sessionId);
    if (this.conversationId !== w.conversationId) this.lastSeq = w.lastSeq;
    this.conversationId = w.conversationId;
    this.attempts = 0;
    this.events.notice(undefined);
    this.setState('connected', w);
    this.keepPinging(w.sessionId);
    for (const item of this.outbox.values()) if (!item.inFlight) void this.post(item);
  }

  /**
   * Pings over Send while connected, so that the server can tell this page
   * from one gone without closing its stream (a laptop put to sleep, a lost
   * network) and free its slot (see Welcome.silence_limit_ms). A ping that
   * fails says nothing the stream will not say itself.
   */
  private keepPinging(sessionId: string): void {
    if (this.silenceLimitMs <= 0) return;
    let nonce = 0n;
    this.pingTimer = window.setInterval(() => {
      if (this.sessionId !== sessionId) return;
      this.chat.send({ sessionId, ping: { nonce: nonce++ } }, { headers: this.sendHeaders(false) }).catch(() => undefined);
    }, Math.max(250, this.silenceLimitMs / PINGS_PER_LIMIT));
  }

  /** Remembers the highest event seq seen: the resume point. */
  private track(frame: ServerFrame): void {
    const f = frame.frame;
    let seq = 0n;
    if (f.case === 'accepted') {
      seq = f.value.seq;
      this.outbox.delete(f.value.clientMessageId);
    } else if (f.case === 'response') seq = f.value.seq;
    else if (f.case === 'error') seq = f.value.seq;
    if (seq > this.lastSeq) this.lastSeq = seq;
  }

  /**
   * Posts a message. Uploads go one at a time: the server reads a client's
   * uploads two at a time (CHATFLOW_SENDS_PER_CLIENT), so one on a slow link
   * leaves the other place to a second tab's. Texts and pings say they carry
   * no upload (`sendHeaders`) and wait for none.
   */
  private post(item: Outgoing, attempt = 0): Promise<void> {
    if (item.content?.case === 'text') return this.postNow(item, attempt);
    item.inFlight = true; // waiting for its turn: not posted again by a Welcome meanwhile
    const turn = this.uploads.then(() => {
      item.inFlight = false;
      return this.postNow(item, attempt);
    });
    this.uploads = turn.catch(() => undefined);
    return turn;
  }

  private async postNow(item: Outgoing, attempt: number): Promise<void> {
    const sessionId = this.sessionId;
    if (!sessionId) return;
    item.inFlight = true;
    try {
      const headers = this.sendHeaders(!smallText(item.content));
      const ack = await this.chat.send({ sessionId, message: { clientMessageId: item.clientMessageId, content: item.content } }, { headers });
      this.outbox.delete(ack.clientMessageId);
      if (ack.seq > this.lastSeq) this.lastSeq = ack.seq;
    } catch (e) {
      const err = ConnectError.from(e);
      item.inFlight = false;
      if (this.sessionId !== sessionId) return; // reconnecting: it goes again after the next Welcome
      const next = onSendRefused(err, attempt);
      if ('retryInMs' in next) {
        window.setTimeout(() => {
          if (this.outbox.has(item.clientMessageId) && this.sessionId === sessionId) void this.post(item, attempt + 1);
        }, next.retryInMs);
        return;
      }
      this.outbox.delete(item.clientMessageId);
      this.events.sendFailed(item.clientMessageId, next.text, next.retryable);
    }
  }

  /** The stream ended or was refused: say why in plain words, and retry when retrying can help. */
  private lost(err: ConnectError, welcomed: boolean): void {
    if (welcomed) {
      this.lostAt = Date.now();
      this.previousSessionId = this.sessionId;
    }
    this.sessionId = undefined;
    this.abort = undefined;
    const retryAfter = Number(err.metadata.get('retry-after-ms'));
    const hint = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined;
    switch (err.code) {
      case Code.ResourceExhausted:
        // A full house says so; other refusals (too many connections from this client, a server whose memory
        // is nearly full) are told in the server's own words. Tried again after its retry-after-ms, or the default.
        if (!welcomed) return this.retryIn(hint ?? FULL_RETRY_MS, 'full', /^server full/i.test(err.rawMessage) ? 'Server full' : `Refused: ${err.rawMessage}`);
        this.resuming = true;
        return this.retryIn(hint ?? 500, 'lost', 'Fell behind the stream');
      case Code.AlreadyExists:
        // Our own previous stream (just closed to switch conversations) still holds the slot for a moment.
        if (Date.now() - this.closedOwnAt < 3000) {
          this.retryTimer = window.setTimeout(() => this.connect(), 250);
          return;
        }
        // Back from a network loss: the server may not have noticed the old stream is dead yet. It lets go of it
        // once it has heard nothing from this page for its silence limit (this page pinged it).
        if (this.resuming && Date.now() - this.lostAt < (this.silenceLimitMs || HELD_RETRY_MS) + MAX_BACKOFF_MS) {
          const within = this.silenceLimitMs > 0 ? ` (it lets go of it within ${Math.ceil(this.silenceLimitMs / 1000)} s of losing it)` : '';
          return this.retryIn(Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.attempts), 'lost', `The server still holds your previous connection${within}`);
        }
        return this.refuse('duplicate', `Already connected in another tab or window as ${this.identity.clientId}. Close it there, then connect again here.`);
      case Code.Unauthenticated: {
        const id = this.identity.clientId;
        const how = `In a terminal on the server's machine, run: npm run client -- token ${id} — then paste what it prints into the Token field and press Connect.`;
        if (!this.identity.token) return this.refuse('auth', `This server needs a token to let ${id} in. ${how}`);
        return this.refuse('auth', `The server did not accept this token (${err.rawMessage}). ${how}`);
      }
      case Code.InvalidArgument:
      case Code.PermissionDenied:
      case Code.FailedPrecondition:
        return this.refuse('refused', `Refused: ${err.rawMessage}`);
      case Code.NotFound:
        this.newConversation();
        return this.refuse('refused', `That conversation does not exist any more (${err.rawMessage}). Connect to start a new one.`);
      case Code.DeadlineExceeded:
        // Taken for gone: its pings did not reach the server for its silence limit (a frozen tab, a network gap).
        if (welcomed && /^no Send/.test(err.rawMessage)) {
          this.resuming = true;
          return this.retryIn(1000, 'lost', 'The server had not heard from this page for a while and closed its connection');
        }
        this.setState('idle');
        this.events.notice({ kind: 'idle', text: 'Disconnected: no message was sent within the first-message deadline, so the server freed the slot. Sending a message reconnects.' });
        return;
      default: {
        // Lost (server restart, network, proxy timeout): back off, then resume where we were.
        if (welcomed) this.resuming = true;
        const backoff = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.attempts);
        return this.retryIn(hint ?? backoff, 'lost', 'Connection lost');
      }
    }
  }

  private retryIn(ms: number, kind: 'full' | 'lost', what: string): void {
    this.attempts++;
    this.setState('waiting');
    const retryAt = Date.now() + ms;
    this.events.notice({ kind, text: what, retryAt });
    this.retryTimer = window.setTimeout(() => this.connect(), ms);
  }

  private refuse(kind: Notice['kind'], text: string): void {
    this.setState('refused');
    this.events.notice({ kind, text });
  }

  private clearRetry(): void {
    if (this.retryTimer !== undefined) window.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private setState(state: ConnState, welcome?: Welcome): void {
    this.state = state;
    if (state !== 'connected') {
      this.welcome = undefined;
      window.clearInterval(this.pingTimer);
      this.pingTimer = undefined;
    }
    this.events.state(state, welcome);
  }
}

export function newId(): string {
  return typeof crypto.randomUUID === 'function' ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** The server reads a Send that says it carries no upload as a request of at most 64 KiB: a text under this many bytes fits with its ids. */
const SMALL_TEXT_BYTES = 60 * 1024;

function smallText(content: Outgoing['content']): boolean {
  return content?.case === 'text' && new TextEncoder().encode(content.value).length <= SMALL_TEXT_BYTES;
}
