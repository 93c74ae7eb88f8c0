import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ServerFrame, type Accepted, type UserMessage } from '../gen/chatflow/v1/chat';
import { DisconnectReason, Event } from '../gen/chatflow/v1/events';
import { mediaKindName, mediaKindOf } from '../domain/media-kind';
import { decideDeadline, recordMessage, type DeadlineState } from '../domain/deadline';
import { decideSilence, notPinged, recordSend, type SilenceState } from '../domain/silence';
import { behind, mayTakeMessage, unansweredMessage, type InputBounds } from '../domain/input-flow';
import type { Config } from '../config/config';
import { ChatFlowError } from '../domain/errors';
import { LATE, orLate } from '../resilience/late';
import { retry } from '../resilience/retry';
import { isTransient } from '../resilience/transient';
import { echoId, MAX_CLIENT_MESSAGE_ID_LENGTH, messageIdFor, responseIdFor } from '../domain/ids';
import { contentHash, decideText, storedContentHash } from '../domain/message-content';
import { validateMedia } from '../domain/media-validation';
import { uploadKey } from '../domain/media-keys';
import { RecentMap } from '../domain/recent-map';
import { asBuffer } from '../encode';
import { disconnectReasonName, failureIdFor } from '../../projections/definitions';
import type { MessageDoc } from '../../projections/models';
import type { Subscription } from '../bus/port';
import { decodeReplyUpdate, type ReplyUpdate } from '../bus/messages';
import { mayBeWritten, type LoggedEvent } from '../eventlog/port';
import type { SessionDeps } from './deps';
import { outcomeOf } from './frames';
import type { Outbound } from './outbound';
import { toChatError, toStatus } from './status';

export interface SessionInfo {
  sessionId: string;
  clientId: string;
  conversationId: string;
  timeZone: string;
  /** When its slot was claimed, on the registry's clock (GatewayDeps.leaseClock): what the lease keeper compares. */
  admittedAt: number;
  /**
   * This session started the conversation: no message of it can be in the
   * log from before (message ids are per conversation), so a new
   * client_message_id needs no read-model lookup.
   */
  newConversation?: boolean;
}

/**
 * One admitted connection, whatever its transport (Chat bidi stream, or
 * Connect + Send for gRPC-Web). Holds the lease, the first-message deadline,
 * the bus subscription that brings replies, and the order of frames.
 */
export class GatewaySession {
  private deadline: DeadlineState;
  private deadlineTimer?: NodeJS.Timeout;
  private silence: SilenceState = notPinged;
  private silenceTimer?: NodeJS.Timeout;
  /** Resolved once a closed session's slot is given back and its disconnect recorded (or that failed). */
  private givenBack?: Promise<void>;
  private subscription?: Subscription;
  private closed = false;
  /** Messages whose append is in flight: replies to them wait until Accepted is written. */
  private readonly awaitingAccept = new Map<string, ServerFrame[]>();
  /**
   * The size of each upload of awaitingAccept (held in memory until stored) and their sum: beyond
   * MEDIA_IN_FLIGHT uploads' worth, the client's input is not read (see updateInputFlow).
   */
  private readonly uploadBytes = new Map<string, number>();
  private uploadBytesInFlight = 0;
  /** Accepted messages waiting for their reply, with the time they were accepted. */
  private readonly awaitingReply = new Map<string, number>();
  /** In-flight and recent acknowledgements by client_message_id, with the content's hash (resends, conflicts). */
  private readonly byClientMessageId = new Map<string, { hash: string; accepted: Promise<Accepted> }>();
  /**
   * Outcomes delivered from the read model (a resend's, or ones the bus may
   * have lost, see recoverAwaited): a late live copy of one is dropped, not
   * sent twice. The newest REMEMBERED only (a live copy comes soon or
   * never); made on first use, as most streams never need it.
   */
  private recovered?: Set<string>;
  /**
   * Messages whose client was told UNAVAILABLE while their event may be in
   * the log all the same (an append that outlasted the timeout, or failed
   * after the broker may have written it): their live frames are held, so the
   * outcome reaches the client once, after it sends the message again.
   */
  private readonly unconfirmed = new Set<string>();
  /**
   * The outcome frames that came for unconfirmed messages, kept for their
   * resend (which then gets them at once, whatever the read model has).
   * Made on first use: most streams never need it.
   */
  private heldForResend?: RecentMap<string, ServerFrame>;
  /** The answer whose streamed parts this stream passes on, by message id (ANSWERED once its outcome came); allocated on first use. */
  private streamingAnswer?: RecentMap<string, string>;
  /**
   * Resent messages owed their outcome (the reply or the error) on this
   * stream, with when it became owed. The overdue sweep looks them up too:
   * a reply the bus lost, or one for a message sent on an earlier stream,
   * may not have been in the read model at the resend.
   */
  private readonly outcomeOwed = new Map<string, number>();
  /** Messages whose outcome a resend is looking up right now (see acknowledgeDuplicate). */
  private readonly outcomeLookups = new Set<string>();
  /**
   * Messages this client sent on its earlier streams on this gateway that were
   * still unanswered when those closed (the gateway carries them over, see
   * carryUnanswered): they count among its unanswered messages until their
   * outcome is heard of on the bus or found in the read model, so reconnecting
   * does not start a client over from none. Insertion order: oldest first.
   */
  private carried?: Set<string>;
  private carriedCheck?: NodeJS.Timeout;
  /** Flow control of the client's input (Chat streams): paused while the client is behind. */
  private input?: { pause(): void; resume(): void };
  private inputPaused = false;
  private outboundHigh = false;
  /** Continued conversations: the read models caught up with the log as of the connection (see earlierHistory). */
  private historySettled?: Promise<boolean>;
  /** Messages are checked one after another so the appends of texts keep the client's order (media: see submit). */
  private chain: Promise<unknown> = Promise.resolve();
  private replaying = false;
  /** Live reply updates, made into frames one after another so they keep the worker's order. */
  private live: Promise<unknown> = Promise.resolve();
  private replayBuffer: ServerFrame[] = [];
  /**
   * While a resume's second replay is pending (see replayWhenSettled): the
   * messages whose outcome this stream has had, so none is replayed twice.
   */
  private outcomesSent?: Set<string>;
  private halfClosed = false;
  /**
   * Set once a key may be in the log without this session knowing it: an
   * append failed (its event may have landed) or byClientMessageId dropped
   * its oldest keys. New keys are then looked up in the read models, even in
   * a conversation this session started.
   */
  private unsure = false;
  /** Set once the server drains: see beginDrain. */
  private drainRetryAfterMs?: number;
  private readonly deliveredWaiters: (() => void)[] = [];
  /** Aborted when the session closes: every piece of its work (uploads, appends, waits) stops waiting then. */
  private readonly abort = new AbortController();
  /**
   * whileOpen's waits: rejected by the one abort listener. A listener per wait
   * (two per message) cost ~2 % of the event loop in EventTarget's
   * bookkeeping under load.
   */
  private readonly waiting = new Set<(reason: unknown) => void>();

  constructor(
    readonly info: SessionInfo,
    private readonly deps: SessionDeps,
    private readonly out: Outbound,
    readonly logger: Logger,
    /** Told once the session closes, with what settles once its slot was given back and its disconnect recorded. */
    private readonly onClosed: (s: GatewaySession, givenBack: Promise<void>) => void,
  ) {
    this.deadline = { connectedAt: deps.steady(), firstMessageAt: null };
    setMaxListeners(0, this.abort.signal);
    this.abort.signal.addEventListener(
      'abort',
      () => {
        for (const reject of this.waiting) reject(this.abort.signal.reason);
        this.waiting.clear();
      },
      { once: true },
    );
    // Built as soon as the claim came back (ChatGateway.open).
    this.claimedAt = deps.leaseClock();
  }

  /** When its slot claim came back from the registry (the lease keeper's view of it), on the registry's clock. */
  readonly claimedAt: number;

  /** When its slot was claimed, on the registry's clock. */
  get admittedAt(): number {
    return this.info.admittedAt;
  }

  get id(): string {
    return this.info.sessionId;
  }

  /** Starts delivery and the deadline; replays what the client missed after `resumeAfter` (up to the log's end). */
  async start(welcome: ServerFrame, resumeAfter: number | undefined, bus: { subscribe: (h: (p: Uint8Array) => void) => Subscription; flush: () => Promise<void> }): Promise<void> {
    this.replaying = resumeAfter !== undefined;
    this.subscription = bus.subscribe((payload) => this.onBusMessage(payload));
    this.out.write(welcome);
    this.armDeadline();
    if (resumeAfter === undefined) return;
    const ms = this.deps.config.readYourWritesMs;
    // A reply published before the bus's server had this subscription never comes live, so the replay must
    // hold it: the log's end the replay waits for is asked for once the subscription is in place. (A bus that
    // does not confirm within the wait is down: its reconnect looks up what this stream awaits.) Replies the
    // log holds but the read models not yet (a projector behind after an outage) would be missed too: the
    // replay reads once they have caught up with that end, or after readYourWritesMs (what they have then;
    // live replies are buffered meanwhile and delivered after it).
    await this.whileOpen(orLate(bus.flush(), ms)).catch(() => undefined);
    if (this.closed) return;
    const caughtUp = await this.whileOpen(this.deps.readModelsSettled(ms)).catch(() => false);
    if (this.closed) return;
    // What this stream gets from now on is noted: buffered live copies of replayed outcomes are dropped, the
    // unanswered messages it awaits skip them, and a second pass (replayWhenSettled) skips them too.
    this.outcomesSent = new Set();
    if (!caughtUp) this.logger.info({ resumeAfter, waitedMs: ms }, 'read models behind the log at a resume: replaying what they have, and again once they have caught up');
    await this.replay(resumeAfter);
    await this.awaitUnanswered();
    if (caughtUp) this.outcomesSent = undefined;
    else void this.replayWhenSettled(resumeAfter);
  }

  /**
   * A resume's last step: the conversation's messages the read models still
   * show unanswered, whose outcome this stream has not had, are awaited on
   * it as a resend's are (outcomeOwed): the reply comes live, or the overdue
   * sweep fetches it from the read model. This covers a reply neither the
   * replay nor the bus brought (published before this stream subscribed, and
   * projected after the replay read), whatever the lag.
   */
  private async awaitUnanswered(): Promise<void> {
    if (this.closed) return;
    try {
      const pending = await this.whileOpen(
        this.deps.messages.find({ where: { conversationId: this.info.conversationId, author: 'client', status: 'pending' }, limit: MAX_AWAITED_AT_RESUME }),
      );
      // Each counts as owed since it was sent (its age on the wall clock, carried onto the steady one): the next
      // overdue sweep looks up those older than its bound.
      const wall = this.deps.clock();
      const steady = this.deps.steady();
      for (const m of pending) if (!this.outcomesSent?.has(m._id) && !this.awaits(m._id)) this.outcomeOwed.set(m._id, steady - Math.max(0, wall - m.time));
    } catch (err) {
      if (!this.abort.signal.aborted) this.logger.warn({ err }, 'could not read the unanswered messages of a resumed conversation; their replies come live or on a later resume');
    }
  }

  /**
   * Replays the replies after `after`, a page at a time: each page waits until
   * the client has taken the previous one, so any number of missed replies
   * comes through under the stream's own backpressure.
   */
  private async replay(after: number): Promise<void> {
    try {
      await this.eachReplyAfter({ seq: after }, (frame) => this.write(frame));
    } finally {
      this.replaying = false;
      const buffered = this.replayBuffer;
      this.replayBuffer = [];
      // Dropped: the live frames of an outcome the replay gave. Not by seq: the read models may hold a later
      // reply of the partition before an earlier one (a batch's documents are written in parallel).
      for (const f of buffered) {
        const id = inReplyToOf(f);
        if (id === undefined || !this.outcomesSent?.has(id)) this.deliver(f);
      }
    }
  }

  /**
   * The conversation's replies (and failures) after `read.seq`, in order, a
   * page at a time from the read models, each as the frame the client gets;
   * `read.seq` follows the last one read. A page is read once the client has
   * taken the previous one.
   */
  private async eachReplyAfter(read: { seq: number }, each: (frame: ServerFrame) => void): Promise<void> {
    for (;;) {
      const page = await this.deps.messages.find({
        where: { conversationId: this.info.conversationId, author: 'bot' },
        range: { field: 'seq', gt: read.seq },
        sort: { field: 'seq', direction: 1 },
        limit: REPLAY_PAGE,
      });
      for (const doc of page) {
        const frame = await this.deps.frames.replyFrame(outcomeOf(doc));
        read.seq = Math.max(read.seq, doc.seq);
        each(frame);
      }
      if (page.length < REPLAY_PAGE || this.closed) return;
      await this.out.drained();
      // Also resolved when the stream ended (a stalled client cut off): no page is read for a closed session.
      if (this.closed) return;
    }
  }

  /**
   * The second pass of a resume whose read models were still behind the log
   * when the first pass read them (a projector catching up after an outage):
   * once they have reached the log's end (asked again every
   * readYourWritesMs, for up to LATE_REPLAY_LIMIT_MS), the replies after
   * `after` are read again and those this stream has not had — by the first
   * pass, live or as a resend's outcome — are delivered. A live copy still on
   * its way of one delivered here is dropped (see recovered).
   */
  private async replayWhenSettled(after: number): Promise<void> {
    const ms = this.deps.config.readYourWritesMs;
    const giveUpAt = this.deps.steady() + LATE_REPLAY_LIMIT_MS;
    try {
      while (!(await this.whileOpen(this.deps.readModelsSettled(ms)).catch(() => false))) {
        if (this.closed) return;
        if (this.deps.steady() >= giveUpAt) {
          this.logger.warn({ resumeAfter: after, waitedMs: LATE_REPLAY_LIMIT_MS }, 'read models still behind the log: replies missed while disconnected may not be replayed (the client can resume again)');
          return;
        }
        await this.whileOpen(new Promise((r) => setTimeout(r, ms).unref()));
      }
      let n = 0;
      await this.eachReplyAfter({ seq: after }, (frame) => {
        const id = inReplyToOf(frame);
        // Checked after the frame was made, just before the write: a live copy may have come meanwhile.
        if (this.closed || id === undefined || this.outcomesSent?.has(id)) return;
        this.markRecovered(id);
        this.deliver(frame);
        n++;
      });
      if (n > 0) this.logger.info({ resumeAfter: after, replies: n }, 'replies the first replay missed (read models behind the log) delivered once they caught up');
    } catch (err) {
      if (!this.abort.signal.aborted) this.logger.error({ err, resumeAfter: after }, 'the second replay of a resume failed; the client can resume again');
    } finally {
      this.outcomesSent = undefined;
    }
  }

  /** Writes a frame to the client, noting the outcome it carries while a second replay is pending (see outcomesSent). */
  private write(frame: ServerFrame): void {
    this.out.write(frame);
    if (!this.outcomesSent) return;
    const f = frame.frame;
    const id = inReplyToOf(frame);
    if ((f?.$case === 'response' || f?.$case === 'error') && id !== undefined) this.outcomesSent.add(id);
  }

  private armDeadline(): void {
    const decision = decideDeadline(this.deadline, this.deps.steady(), this.deps.config.firstMessageTimeoutMs);
    if (decision.type === 'Pending') {
      this.deadlineTimer = setTimeout(() => this.armDeadline(), decision.remainingMs);
      this.deadlineTimer.unref();
    } else if (decision.type === 'Expired') {
      const ms = this.deps.config.firstMessageTimeoutMs;
      void this.close(
        DisconnectReason.DISCONNECT_REASON_DEADLINE,
        new ChatFlowError('DEADLINE_EXCEEDED', `no message within ${ms} ms of connecting: every client must send a message; the slot was freed`),
      );
    }
  }

  /** A worker's reply update: made into its frame in arrival order (a reply's URLs may take a moment), then delivered. */
  private onBusMessage(payload: Uint8Array): void {
    if (this.closed) return;
    let update: ReplyUpdate;
    try {
      update = decodeReplyUpdate(payload);
    } catch (err) {
      this.logger.error({ err }, 'undecodable reply update on the bus');
      return;
    }
    const kind = update.update?.$case;
    if ((kind === 'ready' || kind === 'failed') && this.carried?.delete(update.inReplyTo) && this.inputPaused) this.updateInputFlow();
    if (!this.fromOneAnswer(update)) return;
    this.live = this.live
      .then(() => this.deps.frames.replyFrame(update))
      .then(
        (frame) => frame && this.onReplyFrame(frame),
        (err) => this.logger.error({ err, inReplyTo: update.inReplyTo }, 'could not make the frame of a reply update (an awaited outcome comes from the read model)'),
      );
  }

  /**
   * Whether to pass `update` on: a message's transcript, deltas and voice chunks
   * come from one answer only, the first heard of (see ReplyUpdate.attempt). Two
   * can stream at once — a worker whose claim was taken over (a long pause, a
   * lost partition) and the one that took it — and a client would
   * otherwise see their words interleaved. The reply or failure (one per
   * message, the claims see to that) always passes, and replaces what was
   * streamed; nothing streamed after it passes.
   */
  private fromOneAnswer(update: ReplyUpdate): boolean {
    const kind = update.update?.$case;
    if (kind === 'ready' || kind === 'failed') {
      this.streamingAnswer?.set(update.inReplyTo, ANSWERED);
      return true;
    }
    if (!update.attempt) return true;
    const first = (this.streamingAnswer ??= new RecentMap(STREAMING_ANSWERS)).get(update.inReplyTo);
    if (first === undefined) this.streamingAnswer.set(update.inReplyTo, update.attempt);
    return first === undefined || first === update.attempt;
  }

  private onReplyFrame(frame: ServerFrame): void {
    if (this.closed) return;
    const inReplyTo = inReplyToOf(frame);
    if (inReplyTo !== undefined && this.recovered?.has(inReplyTo)) {
      const f = frame.frame;
      if (f?.$case === 'response' || f?.$case === 'error') this.recovered!.delete(inReplyTo);
      return;
    }
    if (this.replaying) this.replayBuffer.push(frame);
    else this.deliver(frame);
  }

  /** Accepted messages of this stream still waiting for their outcome (their own, or one owed to a resend) since at least `olderThanMs`. */
  awaitedSince(olderThanMs: number): string[] {
    const now = this.deps.steady();
    const ids = [...this.awaitingReply].filter(([, at]) => now - at >= olderThanMs).map(([id]) => id);
    for (const [id, at] of this.outcomeOwed) if (now - at >= olderThanMs && !this.awaitingReply.has(id)) ids.push(id);
    return ids;
  }

  private awaits(messageId: string): boolean {
    return this.awaitingReply.has(messageId) || this.outcomeOwed.has(messageId);
  }

  /**
   * Delivers from the read model the outcome of each of `messageIds` that is
   * still awaited and already recorded: for replies the bus lost (an outage of
   * NATS drops what was published meanwhile) or that are overdue. One not
   * recorded yet stays awaited (looked for again by the caller's next sweep).
   * Returns how many came.
   */
  async recoverAwaited(messageIds: readonly string[]): Promise<number> {
    let n = 0;
    for (const id of messageIds) {
      if (this.closed || this.replaying || !this.awaits(id)) continue;
      const doc = await this.outcomeOf(id);
      if (!doc || this.closed || !this.awaits(id)) continue;
      if (this.deliverRecorded(id, await this.deps.frames.replyFrame(outcomeOf(doc)))) n++;
    }
    return n;
  }

  private deliver(frame: ServerFrame): void {
    const inReplyTo = inReplyToOf(frame);
    if (inReplyTo !== undefined && this.unconfirmed.has(inReplyTo)) {
      const kind = frame.frame?.$case;
      if (kind === 'response' || kind === 'error') (this.heldForResend ??= new RecentMap(HELD_FOR_RESEND)).set(inReplyTo, frame);
      return;
    }
    if (inReplyTo !== undefined) {
      const waiting = this.awaitingAccept.get(inReplyTo);
      if (waiting) {
        waiting.push(frame);
        return;
      }
    }
    this.write(frame);
    const f = frame.frame;
    if ((f?.$case === 'response' || f?.$case === 'error') && inReplyTo !== undefined) {
      const acceptedAt = this.awaitingReply.get(inReplyTo);
      if (acceptedAt !== undefined) {
        this.awaitingReply.delete(inReplyTo);
        // One fewer unanswered: read again if that was what held the input.
        if (this.inputPaused) this.updateInputFlow();
        this.deps.metrics.replyLatencySeconds.observe((this.deps.steady() - acceptedAt) / 1000);
        const made = f.$case === 'response' ? f.response.time : undefined;
        if (made) this.deps.metrics.replyStageSeconds.observe({ stage: 'delivered' }, Math.max(0, this.deps.clock() - made.getTime()) / 1000);
      }
      // A resend waiting for this outcome has it now.
      this.outcomeOwed.delete(inReplyTo);
      this.finishIfDone();
      this.notifyIfDelivered();
    }
  }

  /** After the client half-closed: end once every accepted message has had its outcome. */
  private finishIfDone(): void {
    if (this.halfClosed && this.awaitingReply.size === 0 && this.awaitingAccept.size === 0 && this.outcomeOwed.size === 0) {
      void this.close(DisconnectReason.DISCONNECT_REASON_CLIENT, null);
    }
  }

  /** Reports a problem with one message on the stream (the stream stays open); see toChatError for `unexpected`. */
  chatError(inReplyTo: string, err: unknown, unexpected?: ChatFlowError): void {
    this.out.write({ frame: { $case: 'error', error: toChatError(inReplyTo, err, this.logger, unexpected) } });
  }

  pong(nonce: number): void {
    this.out.write({ frame: { $case: 'pong', pong: { nonce, serverTime: new Date(this.deps.clock()) } } });
  }

  /**
   * A ping that came over Send, answered on the stream unless frames already
   * wait for its transport (its client is not reading): the SendAck answers
   * the ping anyway, and pongs do not pile up behind a client that pings in a
   * loop and never reads (a Chat stream's pings stop being read instead).
   */
  pongForSend(nonce: number): void {
    if (!this.out.waiting) this.pong(nonce);
  }

  /** A Send for this session came (a ping, or a message): a client that pings is held to the silence rule (see decideSilence). */
  heard(ping: boolean): void {
    const held = this.silence.heardAt !== null;
    this.silence = recordSend(this.silence, this.deps.steady(), ping);
    if (!held && this.silence.heardAt !== null) this.armSilence();
  }

  /** One timer per session, set again when it fires on a session heard meanwhile (not at every Send). */
  private armSilence(): void {
    if (this.closed) return;
    const limitMs = this.deps.config.silenceLimitMs;
    const decision = decideSilence(this.silence, this.deps.steady(), limitMs);
    if (decision.type === 'Heard') {
      this.silenceTimer = setTimeout(() => this.armSilence(), decision.remainingMs);
      this.silenceTimer.unref();
    } else if (decision.type === 'Silent') {
      void this.close(
        DisconnectReason.DISCONNECT_REASON_SILENT,
        new ChatFlowError('DEADLINE_EXCEEDED', `no Send (ping or message) for ${decision.silentMs} ms after this client pinged (limit ${limitMs} ms): the stream was taken for dead and closed, its slot freed; connect again to go on (x-resume-after)`),
        `silent ${decision.silentMs} ms`,
      );
    }
  }

  /**
   * Validates, stores media, appends MessageReceived and resolves with the
   * acknowledgement once the event is durable. Rejects with a ChatFlowError
   * when the message is refused (its caller tells the client, see status.ts).
   * The idempotency key is scoped to the conversation: a resend with the same
   * content gets the original ids (duplicate) and its outcome again; the same
   * key with other content is refused.
   */
  submit(message: UserMessage): Promise<Accepted> {
    if (this.closed) return Promise.reject(new ChatFlowError('FAILED_PRECONDITION', 'the session is closed'));
    if (this.drainRetryAfterMs !== undefined) return Promise.reject(this.refusedWhileDraining(this.drainRetryAfterMs));
    const cmid = message.clientMessageId;
    if (!cmid || cmid.length > MAX_CLIENT_MESSAGE_ID_LENGTH) {
      return Promise.reject(this.reject('INVALID_ARGUMENT', `client_message_id is required (1 to ${MAX_CLIENT_MESSAGE_ID_LENGTH} characters)`));
    }
    const content = message.content;
    if (!content) return Promise.reject(this.reject('INVALID_ARGUMENT', 'the message has no content: set text, audio, video or image'));
    const stage = stageTimer(this.deps.metrics.messageStageSeconds, content.$case);
    const { hash, sha256 } = fingerprint(content);
    const known = this.byClientMessageId.get(cmid);
    if (known) {
      if (known.hash !== hash) return Promise.reject(this.conflict(cmid));
      const again = known.accepted.then((a) => ({ ...a, duplicate: true }));
      again.then((a) => {
        this.unconfirmed.delete(a.messageId);
        this.acknowledgeDuplicate(a);
      }, () => undefined);
      return this.withinAppendTimeout(again, () => undefined);
    }
    const bound = this.deps.config.unansweredPerClient;
    // A Chat stream is not read beyond the bound (see updateInputFlow), so this refuses Sends: a unary call has no flow control.
    if (!mayTakeMessage(this.unanswered, bound)) {
      const retryAfterMs = this.deps.config.retryAfterMs;
      this.deps.metrics.messagesRejected.inc({ code: 'RESOURCE_EXHAUSTED' });
      return Promise.reject(new ChatFlowError('RESOURCE_EXHAUSTED', unansweredMessage(bound, retryAfterMs), { 'retry-after-ms': String(retryAfterMs) }));
    }
    const messageId = messageIdFor(this.info.clientId, this.info.conversationId, cmid);
    // Looked up at once, not in turn: a burst's lookups overlap (one after another, 12 reads of a busy
    // read model outlasted the append timeout); the appends below still keep the client's order.
    const earlier = this.earlier(messageId);
    if (earlier !== NONE_EARLIER) earlier.catch(() => undefined);
    this.unconfirmed.delete(messageId);
    this.awaitingAccept.set(messageId, []);
    if (content.$case !== 'text') this.holdUpload(messageId, mediaOf(content).data.length);
    this.updateInputFlow();
    // Checked one after another, so the appends of texts keep the client's order; a media message is
    // appended once its bytes are stored, so a slow or failing object store holds back no other message.
    const prepared = this.chain.then(() => this.whileOpen(this.prepare(message, messageId, hash, sha256, earlier)));
    this.chain = prepared.catch(() => undefined);
    const appended = prepared.then((p) => {
      if (p.kind === 'duplicate') return p.accepted;
      stage('checked');
      if (p.kind === 'new') return this.append(p.event, messageId, cmid, stage);
      return p.event.then((e) => {
        stage('stored');
        return this.append(e, messageId, cmid, stage);
      });
    });
    // Work its worker began (GatewayDeps.early) is called off, unless the log may hold the message after all.
    const early = this.deps.early;
    if (early) appended.catch((err: unknown) => mayBeWritten(err) || early.callOff(messageId, this.info.conversationId));
    let mayHaveLanded = false;
    const accepted = appended.catch((err) => {
      mayHaveLanded = mayBeWritten(err);
      return Promise.reject(this.unavailableIfTransient(err));
    });
    const entry = { hash, accepted };
    this.byClientMessageId.set(cmid, entry);
    if (this.byClientMessageId.size > 10_000) {
      this.byClientMessageId.delete(this.byClientMessageId.keys().next().value!);
      this.unsure = true;
    }
    let timedOut = false;
    accepted.then(
      (a) => {
        this.deadline = recordMessage(this.deadline, this.deps.steady());
        clearTimeout(this.deadlineTimer);
        // Stored after the client was told UNAVAILABLE: its outcome goes to a resend (Accepted{duplicate} + outcome), not unasked.
        if (timedOut) return;
        if (a.duplicate) this.acknowledgeDuplicate(a);
        else {
          if (this.out.waiting) this.deps.metrics.framesQueued.inc({ frame: 'accepted' });
          this.out.write({ frame: { $case: 'accepted', accepted: a } });
          stage('accepted');
          this.awaitingReply.set(messageId, this.deps.steady());
          // Appended again after a failed append the broker had written: the outcome of that copy is this one's.
          this.deliverHeld(messageId);
        }
        this.flushAwaiting(messageId);
      },
      () => {
        // The caller tells the client why (and logs what is not a domain error).
        if (this.byClientMessageId.get(cmid) === entry) this.byClientMessageId.delete(cmid);
        // Failed after the broker may have written it: its outcome may come all the same, and waits for the resend.
        if (mayHaveLanded) this.unconfirm(messageId);
        else if (timedOut) this.unconfirmed.delete(messageId);
        if (!timedOut) this.flushAwaiting(messageId);
      },
    );
    return this.withinAppendTimeout(accepted, () => {
      timedOut = true;
      this.unconfirm(messageId);
      this.flushAwaiting(messageId);
    });
  }

  /**
   * The client gets Accepted or an error within CHATFLOW_APPEND_TIMEOUT_MS,
   * whatever the engines do. The append itself goes on: if it lands late,
   * a resend with the same client_message_id joins it (or finds it in the
   * read model) and gets Accepted{duplicate} and the outcome, once.
   */
  private withinAppendTimeout(accepted: Promise<Accepted>, onTimeout: () => void): Promise<Accepted> {
    const ms = this.deps.config.appendTimeoutMs;
    return orLate(accepted, ms).then((a) => {
      if (a !== LATE) return a;
      onTimeout();
      this.deps.metrics.messagesRejected.inc({ code: 'UNAVAILABLE' });
      const retryAfterMs = this.deps.config.retryAfterMs;
      throw new ChatFlowError('UNAVAILABLE', `the message could not be stored within ${ms} ms; send it again with the same client_message_id in ${retryAfterMs} ms (if it was stored meanwhile it is not processed twice)`, { 'retry-after-ms': String(retryAfterMs) });
    });
  }

  /** An engine's passing trouble (see isTransient) is UNAVAILABLE + retry-after-ms for the client, not INTERNAL. */
  private unavailableIfTransient(err: unknown): unknown {
    if (err instanceof ChatFlowError || !isTransient(err)) return err;
    this.logger.warn({ err }, 'message not stored: an engine is unavailable');
    this.deps.metrics.messagesRejected.inc({ code: 'UNAVAILABLE' });
    const retryAfterMs = this.deps.config.retryAfterMs;
    return new ChatFlowError('UNAVAILABLE', `the message could not be stored right now (a service it needs is unavailable); send it again in ${retryAfterMs} ms`, { 'retry-after-ms': String(retryAfterMs) });
  }

  /**
   * Delivers an outcome read from the read model if the stream still awaits
   * it (checked at the write: it may have come meanwhile, live or by another
   * lookup); its live copy, if one comes later, is dropped (the read model
   * can have a reply before the bus brings it). Whether it was delivered.
   */
  private deliverRecorded(messageId: string, frame: ServerFrame): boolean {
    if (this.closed || !this.awaits(messageId)) return false;
    this.markRecovered(messageId);
    this.deliver(frame);
    return true;
  }

  /** An outcome sent from the read model: its live copy, if one comes later, is dropped. */
  private markRecovered(messageId: string): void {
    addRemembered((this.recovered ??= new Set()), messageId);
  }

  /** The client was told to send the message again: its frames are not sent unasked any more, its outcome waits for the resend. */
  private unconfirm(messageId: string): void {
    addRemembered(this.unconfirmed, messageId);
  }

  /** Delivers the outcome that came while the client had been told to send the message again, if one did. */
  private deliverHeld(messageId: string): boolean {
    const held = this.heldForResend?.get(messageId);
    if (!held) return false;
    this.heldForResend!.delete(messageId);
    this.deliver(held);
    return true;
  }

  /** A resend: Accepted{duplicate} with the original ids, then the recorded outcome (or the reply when it comes). */
  private acknowledgeDuplicate(a: Accepted): void {
    this.out.write({ frame: { $case: 'accepted', accepted: a } });
    if (!this.outcomeOwed.has(a.messageId)) this.outcomeOwed.set(a.messageId, this.deps.steady());
    if (this.deliverHeld(a.messageId)) return;
    // One lookup at a time per message: the resends a client made while a late append hung all join it, and
    // landing together they would each look the outcome up (thousands at once after a Kafka outage).
    if (this.outcomeLookups.has(a.messageId)) return;
    this.outcomeLookups.add(a.messageId);
    void this.resendOutcome(a.messageId)
      .catch((err) => {
        if (!this.abort.signal.aborted) this.logger.error({ err, messageId: a.messageId }, 'could not resend the outcome of a duplicate');
      })
      .finally(() => this.outcomeLookups.delete(a.messageId));
  }

  /**
   * The outcome of a message, from the read model. If it is not there, the
   * read model is first brought up to the log's end (a reply appended before
   * now is then visible); if it is still not there the message is in
   * processing and its reply reaches this stream over the bus when produced.
   */
  private async resendOutcome(messageId: string): Promise<void> {
    let doc = await this.outcomeOf(messageId);
    if (!doc && this.outcomeOwed.has(messageId)) {
      await this.whileOpen(this.deps.readModelsSettled(this.deps.config.readYourWritesMs));
      doc = await this.outcomeOf(messageId);
    }
    if (doc && this.outcomeOwed.has(messageId)) this.deliverRecorded(messageId, await this.deps.frames.replyFrame(outcomeOf(doc)));
  }

  private async outcomeOf(messageId: string): Promise<MessageDoc | null> {
    return (await this.deps.messages.get(responseIdFor(messageId))) ?? (await this.deps.messages.get(failureIdFor(messageId)));
  }

  private conflict(cmid: string): ChatFlowError {
    return this.reject('INVALID_ARGUMENT', `client_message_id "${echoId(cmid)}" was already used in this conversation for a message with different content: use a new client_message_id for a new message`);
  }

  private holdUpload(messageId: string, bytes: number): void {
    this.uploadBytesInFlight += bytes - (this.uploadBytes.get(messageId) ?? 0);
    this.uploadBytes.set(messageId, bytes);
  }

  private flushAwaiting(messageId: string): void {
    const frames = this.awaitingAccept.get(messageId);
    this.awaitingAccept.delete(messageId);
    this.uploadBytesInFlight -= this.uploadBytes.get(messageId) ?? 0;
    this.uploadBytes.delete(messageId);
    for (const f of frames ?? []) this.deliver(f);
    this.updateInputFlow();
    // A half-closed stream whose last message was just refused has nothing more to wait for.
    this.finishIfDone();
    this.notifyIfDelivered();
  }

  /**
   * Checks a message (resend? valid?) and builds its event; for media the
   * event comes once the bytes are stored (`kind: 'uploading'`), without
   * holding back the next message's check.
   */
  private async prepare(
    message: UserMessage,
    messageId: string,
    hash: string,
    sha256: string | undefined,
    earlier: Promise<MessageDoc | null>,
  ): Promise<{ kind: 'duplicate'; accepted: Accepted } | { kind: 'new'; event: Event } | { kind: 'uploading'; event: Promise<Event> }> {
    const existing = await earlier;
    if (existing) {
      // Media projected by older read models have no hash: those resends are taken as the same message.
      const stored = storedContentHash(existing);
      if (stored !== undefined && stored !== hash) throw this.conflict(message.clientMessageId);
      return { kind: 'duplicate', accepted: acceptedFrom(existing) };
    }
    // A resend of a stored message is still acknowledged (it adds nothing); a new one would fill the heap further.
    const heapFull = this.deps.heapFull?.();
    if (heapFull !== undefined) throw this.reject('RESOURCE_EXHAUSTED', heapFull);
    const cfg = this.deps.config;
    const content = message.content!;
    const base = {
      messageId,
      clientMessageId: message.clientMessageId,
      gatewayId: this.deps.gatewayId,
      timeZone: this.info.timeZone,
    };
    if (content.$case === 'text') {
      const verdict = decideText(content.text, cfg.maxTextChars);
      if (!verdict.ok) throw this.reject('INVALID_ARGUMENT', verdict.message);
      const event = this.event({ $case: 'messageReceived', messageReceived: { ...base, content: { $case: 'text', text: content.text } } });
      this.beginEarly(event);
      return { kind: 'new', event };
    }
    const kind = content.$case;
    const media = mediaOf(content);
    const verdict = validateMedia({ kind, mimeType: media.mimeType, data: media.data, maxBytes: cfg.maxMediaBytes });
    if (!verdict.ok) throw this.reject(verdict.code, verdict.message);
    const key = uploadKey(this.info.clientId, messageId, verdict.mimeType);
    const bytes = asBuffer(media.data);
    const ref = {
      kind: mediaKindOf(kind),
      key,
      mimeType: verdict.mimeType,
      sizeBytes: bytes.length,
      sha256: sha256!,
      durationMs: verdict.durationMs ?? 0,
    };
    // Bytes reach the object store before the event that references them. A store failing for a moment is
    // tried again while the client still waits (see withinAppendTimeout); our own verdicts (a full disk) go
    // to the client at once, with their own retry-after-ms.
    const deadline = this.deps.steady() + this.deps.config.appendTimeoutMs;
    const retryable = (err: unknown) => !(err instanceof ChatFlowError) && isTransient(err);
    const event = this.event({ $case: 'messageReceived', messageReceived: { ...base, content: { $case: 'media', media: ref } } });
    this.beginEarly(event, bytes);
    const stored = this.whileOpen(retry(() => this.deps.media.put(key, bytes, verdict.mimeType, ref.sha256), { baseMs: 50, maxMs: 500, deadline, clock: this.deps.steady, retryable, signal: this.abort.signal }));
    return { kind: 'uploading', event: stored.then(() => event) };
  }

  /**
   * This process's worker begins on the message while its upload is stored and
   * its event appended (see GatewayDeps.early); not once the session closed (a
   * check that outlasted it), as that message is not appended.
   */
  private beginEarly(event: Event, upload?: Buffer): void {
    if (!this.abort.signal.aborted) this.deps.early?.begin(event, upload);
  }

  /**
   * The message already in the log under this id from before this connection
   * (resends within it are known by byClientMessageId), from the read models
   * once they hold what was logged before the connection (one read).
   */
  private earlier(messageId: string): Promise<MessageDoc | null> {
    // A new conversation has no message from before (one settled promise for all, not one each).
    if (this.info.newConversation && !this.unsure) return NONE_EARLIER;
    return this.earlierInReadModel(messageId);
  }

  private async earlierInReadModel(messageId: string): Promise<MessageDoc | null> {
    // A continued conversation: a resend of a message sent before this connection must not pass for a new one.
    if (this.historySettled && !(await this.whileOpen(this.historySettled))) {
      this.logger.warn({ messageId }, 'read models still behind the log; a resend from before this connection may be taken for a new message');
    }
    return this.deps.messages.get(messageId);
  }

  private reject(code: 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED', message: string): ChatFlowError {
    this.deps.metrics.messagesRejected.inc({ code });
    return new ChatFlowError(code, message);
  }

  /**
   * `work`, unless the session closes first: then it rejects at once with
   * UNAVAILABLE (the work itself may still complete: an append that lands
   * is found again by its client_message_id when the client resends).
   */
  private whileOpen<T>(work: Promise<T>): Promise<T> {
    const signal = this.abort.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject);
      work.then(
        (value) => {
          this.waiting.delete(reject);
          resolve(value);
        },
        (err: unknown) => {
          this.waiting.delete(reject);
          reject(err);
        },
      );
    });
  }

  private async append(event: Event, messageId: string, clientMessageId: string, stage: StageTimer): Promise<Accepted> {
    // Closed meanwhile: its client was told UNAVAILABLE (send it again), so it is not appended now.
    if (this.abort.signal.aborted) throw this.abort.signal.reason;
    let logged: LoggedEvent;
    const requested = performance.now();
    try {
      logged = await this.whileOpen(this.deps.log.append(event));
    } catch (err) {
      this.unsure = true; // its event may have landed all the same
      throw err;
    }
    stage('appended', requested);
    const p = event.payload;
    const kind = p?.$case === 'messageReceived' && p.messageReceived.content?.$case === 'media' ? (mediaKindName(p.messageReceived.content.media.kind) ?? 'unknown') : 'text';
    this.deps.metrics.messagesAccepted.inc({ kind });
    return { clientMessageId, messageId, seq: logged.seq, duplicate: false };
  }

  event(payload: Event['payload']): Event {
    return {
      eventId: this.deps.newId(),
      time: new Date(this.deps.clock()),
      clientId: this.info.clientId,
      conversationId: this.info.conversationId,
      sessionId: this.info.sessionId,
      payload,
    };
  }

  /**
   * A continued conversation: `settled` resolves once the read models hold
   * everything logged before this connection (read your writes for resends).
   */
  earlierHistory(settled: Promise<boolean>): void {
    this.historySettled = settled;
  }

  /** Chat streams: the client's input, paused while this session is behind (see updateInputFlow). */
  attachInput(input: { pause(): void; resume(): void }): void {
    this.input = input;
    this.updateInputFlow();
  }

  /** Called by the Outbound when its backlog crosses the high-water mark (true) or drains (false). */
  onOutboundPressure(high: boolean): void {
    this.outboundHigh = high;
    this.updateInputFlow();
  }

  /** Messages of this client sent and not answered yet: this stream's (being appended, or accepted and waiting for their outcome) and those carried over. */
  private get unanswered(): number {
    return this.awaitingAccept.size + this.awaitingReply.size + (this.carried?.size ?? 0);
  }

  /**
   * What this session leaves unanswered (asked once it closed): its client's next stream on this gateway counts
   * them (carryUnanswered). Accepted messages only: one whose append was still in flight may never be stored, and
   * would hold the next stream back until it expired.
   */
  unansweredIds(): string[] {
    return [...(this.carried ?? []), ...this.awaitingReply.keys()];
  }

  /** Counts `ids`, left unanswered by this client's earlier streams, among its unanswered messages until their outcome comes. */
  carryUnanswered(ids: readonly string[]): void {
    if (ids.length === 0 || this.closed) return;
    this.carried = new Set(ids);
    this.updateInputFlow();
    this.checkCarriedSoon();
  }

  /**
   * Outcomes of carried messages published before this stream subscribed are
   * never heard of on the bus: while any is carried, the read model is asked
   * every CARRIED_CHECK_MS, oldest first, up to the first still unanswered.
   */
  private checkCarriedSoon(): void {
    if (this.carriedCheck || !this.carried?.size || this.closed) return;
    this.carriedCheck = setTimeout(() => {
      void this.checkCarried().finally(() => {
        this.carriedCheck = undefined;
        this.checkCarriedSoon();
      });
    }, CARRIED_CHECK_MS);
    this.carriedCheck.unref();
  }

  private async checkCarried(): Promise<void> {
    try {
      for (const id of [...(this.carried ?? [])]) {
        if (this.closed || !(await this.outcomeOf(id))) break;
        this.carried?.delete(id);
      }
    } catch (err) {
      this.logger.debug({ err }, 'could not look up the outcomes of messages carried over from earlier streams; trying again');
    }
    this.updateInputFlow();
  }

  /**
   * Flow control instead of disconnection: while the client has many frames
   * to take, or many messages wait for their append, or more than
   * MEDIA_IN_FLIGHT uploads' worth of bytes wait to be stored (a slow object
   * store: each is held in memory until then), or CHATFLOW_UNANSWERED_PER_CLIENT
   * messages wait for their answer, its input is not read; HTTP/2 flow control
   * then holds the client back (the rule: src/domain/input-flow.ts).
   */
  private updateInputFlow(): void {
    if (!this.input) return;
    const reason = this.closed
      ? undefined
      : behind(
          { outboundHigh: this.outboundHigh, appending: this.awaitingAccept.size, uploadBytes: this.uploadBytesInFlight, unanswered: this.unanswered },
          inputBounds(this.deps.config),
        );
    const paused = reason !== undefined;
    if (paused === this.inputPaused) return;
    this.inputPaused = paused;
    if (reason) {
      this.deps.metrics.inputHeld.inc({ reason });
      this.input.pause();
    } else this.input.resume();
  }

  /** The client half-closed: finish once every accepted message has its reply. */
  clientDone(): void {
    this.halfClosed = true;
    void this.chain.then(() => this.finishIfDone());
  }

  // ---- shutdown drain -------------------------------------------------------

  /**
   * Drain, step 1: messages sent on this stream from now on are refused with
   * UNAVAILABLE + `retry-after-ms` (not stored: the client sends them again
   * after reconnecting); replies to messages already accepted keep flowing.
   */
  beginDrain(retryAfterMs: number): void {
    this.drainRetryAfterMs ??= retryAfterMs;
  }

  private refusedWhileDraining(retryAfterMs: number): ChatFlowError {
    this.deps.metrics.messagesRejected.inc({ code: 'UNAVAILABLE' });
    return new ChatFlowError('UNAVAILABLE', `server shutting down: the message was not taken; send it again on a new connection in ${retryAfterMs} ms`, {
      'retry-after-ms': String(retryAfterMs),
    });
  }

  /** Resolves once every message this session took has its reply (or ChatError) written, or the session closed. */
  repliesDelivered(): Promise<void> {
    return new Promise((resolve) => {
      this.deliveredWaiters.push(resolve);
      this.notifyIfDelivered();
    });
  }

  /** How many of this session's messages still wait for a reply or owe a resend its outcome (the drain waits for them). */
  get repliesPending(): number {
    let owed = 0;
    for (const id of this.outcomeOwed.keys()) if (!this.awaitingReply.has(id)) owed++;
    return this.awaitingReply.size + this.awaitingAccept.size + owed;
  }

  private notifyIfDelivered(): void {
    if (!this.closed && this.repliesPending > 0) return;
    for (const w of this.deliveredWaiters.splice(0)) w();
  }

  /** Drain, last step: ends the stream with UNAVAILABLE + `retry-after-ms` and records the disconnect. */
  endForShutdown(retryAfterMs: number): Promise<void> {
    return this.close(
      DisconnectReason.DISCONNECT_REASON_SHUTDOWN,
      new ChatFlowError('UNAVAILABLE', 'server shutting down; reconnect with x-resume-after to get what you missed', { 'retry-after-ms': String(retryAfterMs) }),
    );
  }

  /**
   * Ends the session once: stops its work (see whileOpen), frees the slot,
   * records ClientDisconnected, ends the stream with `end`: null = OK,
   * undefined = the stream is already gone, else the error it ends with
   * (made a status by toStatus; anything but a ChatFlowError is logged).
   * A second call resolves with the first, once the slot is given back.
   */
  async close(reason: DisconnectReason, end: unknown, detail = ''): Promise<void> {
    if (this.closed) return this.givenBack;
    this.closed = true;
    this.abort.abort(new ChatFlowError('UNAVAILABLE', 'the session closed before the message was stored; send it again on a new connection (the same client_message_id is safe)'));
    this.notifyIfDelivered();
    clearTimeout(this.deadlineTimer);
    clearTimeout(this.silenceTimer);
    clearTimeout(this.carriedCheck);
    this.subscription?.unsubscribe();
    if (end !== undefined) this.out.end(end === null ? null : toStatus(end, this.logger));
    let givenBack!: () => void;
    const given = (this.givenBack = new Promise<void>((resolve) => (givenBack = resolve)));
    this.onClosed(this, given);
    const name = disconnectReasonName(reason);
    this.deps.metrics.disconnects.inc({ reason: name });
    try {
      await this.deps.releaseSlot(this.info.sessionId);
      await this.deps.log.append(
        this.event({ $case: 'clientDisconnected', clientDisconnected: { reason, gatewayId: this.deps.gatewayId, detail } }),
      );
    } catch (err) {
      this.logger.error({ err }, 'could not record the disconnect (the lease will expire)');
    } finally {
      givenBack();
    }
    this.logger.info({ reason: name }, 'client disconnected');
  }
}

/** `earlier` of a message in a new conversation: nothing from before. */
const NONE_EARLIER: Promise<MessageDoc | null> = Promise.resolve(null);

/** Replies replayed per page on resume: the next page waits until the client took this one. */
const REPLAY_PAGE = 256;
/** Outcome frames of unconfirmed messages a stream keeps for their resends (the oldest go first). */
const HELD_FOR_RESEND = 256;
/** Message ids a stream remembers in each of its sets (unconfirmed, recovered): the oldest beyond are forgotten. */
const REMEMBERED = 10_000;

/**
 * Adds `id`, forgetting the oldest beyond REMEMBERED. A plain Set, not a
 * RecentSet: its memory follows what it holds (a ring is allocated whole, per
 * stream), and a stream's sets are seldom full.
 */
function addRemembered(set: Set<string>, id: string): void {
  set.add(id);
  if (set.size > REMEMBERED) set.delete(set.values().next().value!);
}
/** Messages whose streaming answer a stream remembers (the oldest forgotten first); see fromOneAnswer. */
const STREAMING_ANSWERS = 256;
const ANSWERED = '';

/** How long a resume's second replay waits for read models still behind the log (see replayWhenSettled). */
const LATE_REPLAY_LIMIT_MS = 120_000;
/** Unanswered messages of its conversation a resumed stream awaits at most (the whole server has at most 500 in processing). */
const MAX_AWAITED_AT_RESUME = 1_000;
/** Messages of one session waiting for their append beyond which its input is no longer read. */
const MAX_PENDING_APPENDS = 64;
/** How often the outcomes of messages carried over from a client's earlier streams are looked up in the read model (see checkCarriedSoon). */
const CARRIED_CHECK_MS = 1_000;
/**
 * Uploads' worth of bytes (CHATFLOW_MAX_MEDIA_BYTES each) one stream may have
 * waiting to be stored before its input is paused: 32 MiB by default, where 64
 * messages of 8 MiB (512 MiB) could wait before.
 */
const MEDIA_IN_FLIGHT = 4;

/** A stream's input bounds, from the configuration: made once per configuration, not per message or per stream. */
const boundsByConfig = new WeakMap<Config, InputBounds>();
function inputBounds(config: Config): InputBounds {
  let bounds = boundsByConfig.get(config);
  if (!bounds) boundsByConfig.set(config, (bounds = { appending: MAX_PENDING_APPENDS, uploadBytes: MEDIA_IN_FLIGHT * config.maxMediaBytes, unanswered: config.unansweredPerClient }));
  return bounds;
}

type MediaContent = Exclude<NonNullable<UserMessage['content']>, { $case: 'text' }>;

/** The media part of a message that is not a text (its bytes, type and declared size). */
function mediaOf(content: MediaContent) {
  return content.$case === 'audio' ? content.audio : content.$case === 'video' ? content.video : content.image;
}

/** The content's hash (resends vs conflicts) and, for media, the SHA-256 of the bytes (kept in the event). */
function fingerprint(content: NonNullable<UserMessage['content']>): { hash: string; sha256?: string } {
  if (content.$case === 'text') return { hash: contentHash({ text: content.text }) };
  const media = mediaOf(content);
  const sha256 = createHash('sha256').update(media.data).digest('hex');
  return { hash: contentHash({ mediaKind: content.$case, sha256 }), sha256 };
}

/** Observes a message's stages: time since it arrived, or since `from` (stage `append` when `from` is given). */
type StageTimer = (name: 'checked' | 'stored' | 'appended' | 'accepted', from?: number) => void;

type StageHistogram = SessionDeps['metrics']['messageStageSeconds'];
type StageName = Parameters<StageTimer>[0] | 'append';
type Series = ReturnType<StageHistogram['child']>;

/** Each message kind's series of each stage, looked up once (five observations a message), made when first observed. */
const stageSeries = new WeakMap<StageHistogram, Map<string, Partial<Record<StageName, Series>>>>();

function stageTimer(h: StageHistogram, kind: string): StageTimer {
  let byKind = stageSeries.get(h);
  if (!byKind) stageSeries.set(h, (byKind = new Map()));
  let series = byKind.get(kind);
  if (!series) byKind.set(kind, (series = {}));
  const s = series;
  const observe = (stage: StageName, seconds: number) => (s[stage] ??= h.child({ stage, kind })).observe(seconds);
  const t0 = performance.now();
  return (name, from) => {
    const now = performance.now();
    observe(name, (now - t0) / 1000);
    if (from !== undefined) observe('append', (now - from) / 1000);
  };
}

function acceptedFrom(doc: MessageDoc): Accepted {
  return { clientMessageId: doc.clientMessageId ?? '', messageId: doc._id, seq: doc.seq, duplicate: true };
}

function inReplyToOf(frame: ServerFrame): string | undefined {
  const f = frame.frame;
  switch (f?.$case) {
    case 'delta':
      return f.delta.inReplyTo;
    case 'response':
      return f.response.inReplyTo;
    case 'error':
      return f.error.inReplyTo;
    default:
      return undefined;
  }
}
