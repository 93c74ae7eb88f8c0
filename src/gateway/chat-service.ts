import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { status as grpcStatus, type Metadata, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { SendAck, SendRequest, type ChatServiceServer, type ClientFrame, type ConnectRequest, type ServerFrame } from '../gen/chatflow/v1/chat';
import { DisconnectReason } from '../gen/chatflow/v1/events';
import { ChatFlowError } from '../domain/errors';
import { ownershipError } from '../domain/ownership';
import { decideTimeZone } from '../domain/timezone';
import { leaseTiming, type LeaseTiming } from '../domain/lease';
import { LeaseKeeper } from './lease-keeper';
import { isoLocalTime } from '../domain/local-time';
import { clientSubject, NoResponderError, sessionSubject, type Subscription } from '../bus/port';
import type { GatewayDeps, SessionDeps } from './deps';
import type { ConversationDoc } from '../../projections/models';
import { DEFAULT_FLOW, Outbound, type WritableCall } from './outbound';
import { WIRE_FLAW_MESSAGES, wireFlawOf } from './wire-check';
import { echoId } from '../domain/ids';
import { GatewaySession } from './session';
import { secondConnection, type HolderProbe } from '../domain/second-connection';
import { connectRateMessage, decideConnect, type ConnectBucket } from '../domain/connect-rate';
import { RecentMap } from '../domain/recent-map';
import { carryError, domainStatus, toChatError, toStatus } from './status';
import { decodeRoutedReply, decodeRoutedRequest, decodeYieldReply, encodeRoutedReply, encodeRoutedSend, encodeRoutedYield, PROBE_PAYLOAD, type RoutedReply } from './routed';

const MAX_CONVERSATION_ID = 128;
/** How long a Send forwarded to another gateway may take (it includes the durable append). */
const SEND_ROUTE_TIMEOUT_MS = 15_000;

/** How long a probe of the holder of a client's slot may take before nothing is learnt from it. */
const HOLDER_PROBE_MS = 1_000;
/** How long the holder of a stream being taken over may take to close it and give its slot back. */
const TAKE_OVER_MS = 5_000;

/** What a client is told when its message could not be stored for a reason that is not its own. */
const NOT_STORED = new ChatFlowError('UNAVAILABLE', 'the message could not be stored; send it again');

/** Clients whose connection attempts a gateway counts (a bucket is ~100 bytes): more than a gateway ever holds at once. */
const CONNECT_BUCKETS = 50_000;

/** Clients whose unanswered messages a gateway carries from a closed stream to their next (see carriedOver). */
const CARRIED_CLIENTS = 10_000;
/** Carried over at most this long after the stream that left them closed (every message is answered well within it). */
const CARRIED_FOR_MS = 5 * 60_000;

/** A reply not seen this long after its Accepted is looked up in the read model (the bus may have lost it). */
const OVERDUE_REPLY_MS = 10_000;

/**
 * ChatService: admission at stream start, then a GatewaySession per connection.
 * `Chat` (bidi) and `Connect` + `Send` (gRPC-Web) share every rule.
 */
export class ChatGateway {
  private readonly sessions = new Map<string, GatewaySession>();
  /** Each client's connection attempts on this gateway (see decideConnect); the most recent clients only. */
  private readonly connectBuckets = new RecentMap<string, ConnectBucket>(CONNECT_BUCKETS);
  /**
   * The messages each client's last stream on this gateway left unanswered,
   * with when it closed: its next stream counts them among its unanswered
   * messages (CHATFLOW_UNANSWERED_PER_CLIENT), so a client does not start over
   * from none by reconnecting. The newest clients only.
   */
  private readonly carriedOver = new RecentMap<string, { ids: string[]; at: number }>(CARRIED_CLIENTS);
  /** Sessions closed whose slot is not yet given back or whose disconnect is not yet recorded: a drain waits for them. */
  private readonly closing = new Set<Promise<void>>();
  private readonly leases: LeaseKeeper;
  /** The gateway's deps as its sessions see them (releases go through the lease keeper). */
  private readonly sessionDeps: SessionDeps;
  private sweepTimer?: NodeJS.Timeout;
  private overdueTimer?: NodeJS.Timeout;
  private busWatch?: Subscription;
  private releasesHeard?: Promise<Subscription | undefined>;
  private recovering = false;
  private stopping = false;
  /** This gateway process, as its leases name it: a restart never renews the previous run's slots. */
  private readonly holder: string;
  /** From CHATFLOW_LEASE_MS, or less where the registry detects a dead gateway sooner (its heartbeat). */
  private readonly timing: LeaseTiming;

  constructor(
    private readonly deps: GatewayDeps,
    private readonly logger: Logger,
  ) {
    this.holder = `${deps.gatewayId}/${randomUUID().slice(0, 8)}`;
    this.timing = leaseTiming(Math.min(deps.config.leaseMs, deps.registry.deadHolderMs ?? Infinity));
    this.leases = new LeaseKeeper({
      registry: deps.registry, holder: this.holder, clock: deps.leaseClock, timing: this.timing, logger,
      held: () => [...this.sessions.values()].map((s) => ({ sessionId: s.id, admittedAt: s.admittedAt, claimedAt: s.claimedAt })),
      heldCount: () => this.sessions.size,
      holds: (id) => this.sessions.has(id),
      observeRenewal: (ms, ok) => deps.metrics.leaseRenewalSeconds.observe({ outcome: ok ? 'ok' : 'failed' }, ms / 1000),
      close: (ids, detail) => {
        for (const id of ids) {
          void this.sessions.get(id)?.close(
            DisconnectReason.DISCONNECT_REASON_LEASE_EXPIRED,
            new ChatFlowError('UNAVAILABLE', `${detail} with x-resume-after to get what you missed`, { 'retry-after-ms': String(deps.config.retryAfterMs) }),
          );
        }
      },
    });
    // Sessions give their slot back through the keeper: one the store cannot take now is given back later.
    this.sessionDeps = { ...deps, releaseSlot: (id) => this.leases.release(id) };
  }

  get connected(): number {
    return this.sessions.size;
  }

  /** Renews this gateway's leases and expires the leases of dead gateways. */
  start(): void {
    const { sweepEveryMs } = this.timing;
    this.leases.start();
    this.sweepTimer = setInterval(() => void this.sweep(), sweepEveryMs);
    this.sweepTimer.unref();
    // Replies the bus lost (published while it was down) or that are overdue come from the read model.
    this.busWatch = this.deps.bus.onReconnect(() => void this.recoverReplies(0, 'the bus reconnected', { settle: true }));
    this.overdueTimer = setInterval(() => void this.recoverReplies(OVERDUE_REPLY_MS, 'replies overdue', { settle: false }), OVERDUE_REPLY_MS / 2);
    this.overdueTimer.unref();
    // Gateways tell each other of freed slots: a full house refuses without asking the store each time.
    this.releasesHeard = this.deps.registry.hearReleases?.(this.deps.bus).catch((err: unknown) => {
      this.logger.warn({ err }, 'could not listen for connection slots freed elsewhere; refusals ask the registry each time');
      return undefined;
    });
  }

  /**
   * Looks up in the read model the outcomes this gateway's streams have waited
   * for since at least `olderThanMs`, and delivers those already recorded.
   * Delivery over the bus is at most once; this makes every reply in the log
   * reach its stream. After a bus outage (`settle`) the read model is first
   * brought up to the log's end, so one look finds every reply published
   * meanwhile. The overdue sweep does not wait for it: on the stack that wait
   * polls the projector group's Kafka offsets (measured with
   * loadtest/settled-cost.ts: ~5 admin requests and ~60 ms per look while the
   * projector keeps up, ~170 requests and the whole 5 s timeout while it lags,
   * i.e. every sweep when the system is overloaded), and a reply not
   * projected yet is looked for again at the next sweep anyway.
   */
  async recoverReplies(olderThanMs: number, why: string, opts: { settle: boolean }): Promise<number> {
    if (this.recovering) return 0;
    // Runs on a timer over every open stream (10,000 on one gateway, nearly all idle): an idle one costs a size check,
    // not an array and an object per tick.
    const waiting: { s: GatewaySession; ids: string[] }[] = [];
    for (const s of this.sessions.values()) {
      if (s.repliesPending === 0) continue;
      const ids = s.awaitedSince(olderThanMs);
      if (ids.length > 0) waiting.push({ s, ids });
    }
    if (waiting.length === 0) return 0;
    this.recovering = true;
    try {
      if (opts.settle) await this.deps.readModelsSettled(this.deps.config.readYourWritesMs);
      const counts = await Promise.all(waiting.map(({ s, ids }) => s.recoverAwaited(ids)));
      const n = counts.reduce((a, b) => a + b, 0);
      if (n > 0) this.logger.warn({ recovered: n, why }, 'replies delivered from the read model (missed on the bus)');
      return n;
    } catch (err) {
      this.logger.warn({ err, why }, 'could not look up awaited replies; will try again');
      return 0;
    } finally {
      this.recovering = false;
    }
  }

  /** Leases past their expiry belong to gateways that stopped renewing: free them and record why. */
  async sweep(): Promise<void> {
    try {
      for (const lease of await this.deps.registry.expire(this.deps.leaseClock())) {
        const local = this.sessions.get(lease.sessionId);
        if (local) {
          await local.close(DisconnectReason.DISCONNECT_REASON_LEASE_EXPIRED, new ChatFlowError('UNAVAILABLE', 'connection lease expired; reconnect'));
          continue;
        }
        await this.deps.log.append({
          eventId: this.deps.newId(),
          time: new Date(this.deps.clock()),
          clientId: lease.clientId,
          conversationId: lease.conversationId,
          sessionId: lease.sessionId,
          payload: { $case: 'clientDisconnected', clientDisconnected: { reason: DisconnectReason.DISCONNECT_REASON_LEASE_EXPIRED, gatewayId: lease.gatewayId, detail: 'lease not renewed' } },
        });
        this.logger.warn({ clientId: lease.clientId, gatewayId: lease.gatewayId }, 'lease expired; slot freed');
      }
    } catch (err) {
      this.logger.error({ err }, 'lease sweep failed');
    }
  }

  readonly service: ChatServiceServer = {
    chat: (call) => this.chat(call),
    connect: (call) => this.connect(call),
    send: (call, callback) => this.send(call, callback),
  };

  private chat(call: ServerDuplexStream<ClientFrame, ServerFrame>): void {
    // Its input is read only once it is admitted. Admission can wait (the token, the log, the registry, a resume's
    // replay), and each frame can be 17 MiB: read meanwhile, up to 64 of them were held per stream, refused or not.
    // Unread, they stay with the client (HTTP/2 flow control).
    let session: GatewaySession | undefined;
    call.on('cancelled', () => void session?.close(DisconnectReason.DISCONNECT_REASON_CLIENT, undefined));
    call.on('error', (err) => {
      this.logger.debug({ err }, 'stream error');
      void session?.close(DisconnectReason.DISCONNECT_REASON_ERROR, undefined, String(err));
    });
    void this.open(call).then((s) => {
      if (!s) return;
      session = s;
      call.on('data', (frame: ClientFrame) => this.onFrame(s, frame));
      call.on('end', () => s.clientDone());
      s.attachInput(call);
      if (call.cancelled) void s.close(DisconnectReason.DISCONNECT_REASON_CLIENT, undefined);
    }).catch((err) => this.streamFailed(err, session));
  }

  /** Last resort for a stream's handlers: logged once, only this stream ends (INTERNAL). */
  private streamFailed(err: unknown, session: GatewaySession | undefined): void {
    if (!session) return void this.logger.error({ err }, 'unexpected error in a stream handler');
    void session.close(DisconnectReason.DISCONNECT_REASON_ERROR, err, 'handler error');
  }

  /** A client reconnecting in a loop is held to CHATFLOW_CONNECTS_PER_MINUTE on this gateway: RESOURCE_EXHAUSTED + retry-after-ms. */
  private checkConnectRate(clientId: string): void {
    const { connectBurst, connectsPerMinute } = this.deps.config;
    const verdict = decideConnect(this.connectBuckets.get(clientId), this.deps.steady(), connectBurst, connectsPerMinute);
    this.connectBuckets.set(clientId, verdict.bucket);
    if (verdict.ok) return;
    this.deps.metrics.admissionsRefused.inc({ reason: 'rate_limited' });
    throw new ChatFlowError('RESOURCE_EXHAUSTED', connectRateMessage(clientId, connectBurst, connectsPerMinute, verdict.retryAfterMs), {
      'retry-after-ms': String(verdict.retryAfterMs),
    });
  }

  /**
   * One client frame. Nothing in it may escape as an exception (it would be
   * thrown from the stream's event handler and take the process down): a bad
   * message gets a ChatError, anything unexpected is logged once and ends
   * this stream only, with INTERNAL.
   */
  private onFrame(session: GatewaySession, frame: ClientFrame): void {
    try {
      const f = frame.frame;
      const flaw = wireFlawOf(frame);
      if (flaw) {
        this.deps.metrics.messagesRejected.inc({ code: 'INVALID_ARGUMENT' });
        return session.chatError(f?.$case === 'message' ? f.message.clientMessageId : '', new ChatFlowError('INVALID_ARGUMENT', WIRE_FLAW_MESSAGES[flaw]));
      }
      if (f?.$case === 'ping') return session.pong(f.ping.nonce);
      if (f?.$case !== 'message') return;
      const cmid = f.message.clientMessageId;
      session.submit(f.message).catch((err) => session.chatError(cmid, err, NOT_STORED));
    } catch (err) {
      this.streamFailed(err, session);
    }
  }

  private connect(call: ServerWritableStream<ConnectRequest, ServerFrame>): void {
    // A ConnectRequest has no field, but bytes that are no message at all are not one: refused as a Chat frame or a Send would be.
    const flaw = wireFlawOf(call.request);
    if (flaw) {
      this.deps.metrics.admissionsRefused.inc({ reason: 'invalid_request' });
      call.emit('error', domainStatus(new ChatFlowError('INVALID_ARGUMENT', WIRE_FLAW_MESSAGES[flaw])));
      return;
    }
    let session: GatewaySession | undefined;
    call.on('cancelled', () => void session?.close(DisconnectReason.DISCONNECT_REASON_CLIENT, undefined));
    void this.open(call).then((s) => {
      session = s;
      if (s && call.cancelled) void s.close(DisconnectReason.DISCONNECT_REASON_CLIENT, undefined);
    }).catch((err) => this.streamFailed(err, session));
  }

  private send(call: ServerUnaryCall<SendRequest, SendAck>, callback: sendUnaryData<SendAck>): void {
    const run = async (): Promise<SendAck> => {
      const clientId = await this.deps.auth.identify(getter(call.metadata));
      const flaw = wireFlawOf(call.request);
      if (flaw) throw new ChatFlowError('INVALID_ARGUMENT', WIRE_FLAW_MESSAGES[flaw]);
      if (!call.request.message && !call.request.ping) throw new ChatFlowError('INVALID_ARGUMENT', 'a Send carries a message or a ping: neither is set');
      if (call.request.message && call.request.ping) throw new ChatFlowError('INVALID_ARGUMENT', 'a Send carries a message or a ping, not both');
      const session = this.sessions.get(call.request.sessionId);
      if (session) return this.submitOn(session, clientId, call.request);
      return this.forwardSend(clientId, call.request);
    };
    run().then(
      (ack) => callback(null, ack),
      (err) => callback(toStatus(err, this.logger, NOT_STORED)),
    );
  }

  private async submitOn(session: GatewaySession, clientId: string, request: SendRequest): Promise<SendAck> {
    const denied = ownershipError('session', session.info.clientId, clientId);
    if (denied) throw denied;
    session.heard(request.ping !== undefined);
    if (request.ping) {
      session.pongForSend(request.ping.nonce);
      return { clientMessageId: '', messageId: '', seq: 0, duplicate: false };
    }
    const a = await session.submit(request.message!);
    return { clientMessageId: a.clientMessageId, messageId: a.messageId, seq: a.seq, duplicate: a.duplicate };
  }

  /**
   * A browser's Send may reach another replica than its Connect (Envoy balances
   * each call): hand it over the bus to the gateway that holds the session.
   */
  private async forwardSend(clientId: string, request: SendRequest): Promise<SendAck> {
    const payload = encodeRoutedSend(clientId, request);
    let reply: Uint8Array;
    try {
      reply = await this.deps.bus.request(sessionSubject(request.sessionId), payload, SEND_ROUTE_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof NoResponderError && !err.timedOut) {
        throw new ChatFlowError('NOT_FOUND', `session ${echoId(request.sessionId)} is not open: connect first`);
      }
      this.logger.warn({ err, sessionId: request.sessionId }, 'Send could not reach the gateway holding the session');
      throw new ChatFlowError('UNAVAILABLE', 'the gateway holding this session did not answer; send again');
    }
    return decodeRoutedReply(reply);
  }

  /** The gateway side of forwardSend, served for each of its sessions. */
  private async onRoutedSend(session: GatewaySession, payload: Uint8Array): Promise<Uint8Array> {
    let reply: RoutedReply;
    try {
      const asked = decodeRoutedRequest(payload);
      if (asked.kind === 'probe') return encodeRoutedReply({ held: true });
      if (asked.kind === 'yield') {
        const denied = ownershipError('session', session.info.clientId, asked.clientId);
        if (denied) throw denied;
        // Closed (slot given back, disconnect recorded) before the answer: the new connection claims the slot next,
        // and counts what this stream left unanswered among its own (CHATFLOW_UNANSWERED_PER_CLIENT), on any gateway.
        await session.close(
          DisconnectReason.DISCONNECT_REASON_REPLACED,
          new ChatFlowError('ALREADY_EXISTS', `this stream was replaced by a newer connection of ${echoId(asked.clientId)} that named it (x-replaces-session)`),
          'replaced',
        );
        return encodeRoutedReply({ yielded: true, unanswered: session.unansweredIds().slice(-this.deps.config.unansweredPerClient) });
      }
      const ack = await this.submitOn(session, asked.clientId, asked.request);
      reply = { ack: Buffer.from(SendAck.encode(ack).finish()).toString('base64') };
    } catch (err) {
      reply = carryError(err, session.logger, NOT_STORED);
    }
    return encodeRoutedReply(reply);
  }

  /** Admission: identity, time zone, conversation, slot. Ends the call with the right status on refusal. */
  private async open(call: WritableCall): Promise<GatewaySession | undefined> {
    const arrived = performance.now();
    const answered = (outcome: string) => this.deps.metrics.admissionSeconds.observe({ outcome }, (performance.now() - arrived) / 1000);
    // What is set up step by step, undone by the catch below if a later step fails.
    let slot: string | undefined;
    let route: Subscription | undefined;
    let registered: string | undefined;
    const callLogger = this.logger;
    try {
      if (this.stopping) throw new ChatFlowError('UNAVAILABLE', 'server shutting down; reconnect shortly');
      const heapFull = this.deps.heapFull?.();
      if (heapFull !== undefined) {
        this.deps.metrics.admissionsRefused.inc({ reason: 'memory_full' });
        throw new ChatFlowError('RESOURCE_EXHAUSTED', heapFull);
      }
      const md = getter(call.metadata);
      const clientId = await this.refuseAs('unauthenticated', () => this.deps.auth.identify(md));
      this.checkConnectRate(clientId);
      const tz = decideTimeZone(md('x-timezone'), this.deps.config.allowedTimeZones);
      if (!tz.ok) {
        this.deps.metrics.admissionsRefused.inc({ reason: tz.code === 'INVALID_ARGUMENT' ? 'invalid_timezone' : 'timezone_not_allowed' });
        throw new ChatFlowError(tz.code, tz.message);
      }
      const resumeAfter = parseResumeAfter(md('x-resume-after'));
      const requested = md('x-conversation-id');
      let conversationId: string;
      let lastSeq = 0;
      const newConversation = requested === undefined || requested === '';
      if (!newConversation) {
        if (requested.length > MAX_CONVERSATION_ID) throw new ChatFlowError('INVALID_ARGUMENT', 'x-conversation-id is too long');
        const conv = await this.ownedConversation(requested, clientId);
        conversationId = requested;
        lastSeq = conv.lastSeq;
      } else {
        conversationId = randomUUID();
      }

      const sessionId = randomUUID();
      const now = this.deps.clock();
      const admittedAt = this.deps.leaseClock();
      const cfg = this.deps.config;
      const claim = (at: number) => this.deps.registry.acquire({
        clientId, sessionId, gatewayId: this.deps.gatewayId, holder: this.holder, conversationId, now: at, leaseMs: this.timing.ttlMs, maxClients: cfg.maxClients,
        lateAfterMs: this.timing.lateAfterMs,
      });
      let result = await claim(admittedAt);
      // A client back from a stream it lost while its gateway still holds it (a laptop that slept, a network that
      // changed) takes it over by naming it: the session id only that stream was told, in its Welcome.
      const replaces = md('x-replaces-session');
      let leftByReplaced: string[] = [];
      if (!result.ok && result.reason !== 'full' && replaces !== undefined && replaces === result.holder.sessionId) {
        leftByReplaced = await this.takeOver(replaces, clientId);
        result = await claim(this.deps.leaseClock());
        if (result.ok) callLogger.info({ clientId, replaced: replaces }, 'took over the client\'s earlier stream');
      }
      if (!result.ok) {
        this.deps.metrics.admissionsRefused.inc({ reason: result.reason });
        if (result.reason !== 'full') {
          // Is the first connection alive? Its gateway is asked; ALREADY_EXISTS only when it is known to be.
          const probe = await this.probeHolder(result.holder.sessionId);
          throw secondConnection({ clientId, reason: result.reason, holder: result.holder, now: this.deps.leaseClock(), probe, retrySoonMs: this.timing.renewEveryMs });
        }
        throw new ChatFlowError('RESOURCE_EXHAUSTED', `server full: ${cfg.maxClients} clients connected; retry in ${cfg.retryAfterMs} ms`, {
          'retry-after-ms': String(cfg.retryAfterMs),
        });
      }
      slot = sessionId;
      // Claimed while this gateway's renewals were failing (its database coming back, say): the slot lives only
      // as long as the gateway's heartbeat, which may lapse and be swept before the next renewal. Or the claim
      // waited on the store so long that another gateway may judge it lapsed before it sees it renewed (see
      // mayKeepClaim). Give it back. Judged on the claim's own stamp (when the registry sent it), not on when the
      // admission began: its lost races and reads came before that claim was sent.
      const claimSentAt = result.lease.acquiredAt;
      if (!this.leases.mayKeep(claimSentAt)) {
        this.deps.metrics.admissionsRefused.inc({ reason: 'registry_late' });
        callLogger.warn({ clientId, ...this.leases.lateness(claimSentAt) }, 'slot claim came back too late to keep (claimMs or sinceRenewalMs past trustMs); given back');
        throw new ChatFlowError('UNAVAILABLE', `the connection registry answered too late to keep your slot; retry in ${cfg.retryAfterMs} ms`, {
          'retry-after-ms': String(cfg.retryAfterMs),
        });
      }
      const logger = callLogger.child({ sessionId, clientId, conversationId });
      const outbound = new Outbound(call, {
        onStalled: (err) => void session.close(DisconnectReason.DISCONNECT_REASON_ERROR, err, 'client read nothing'),
        onPressure: (high) => session.onOutboundPressure(high),
      }, { ...DEFAULT_FLOW, stallMs: cfg.slowClientTimeoutMs });
      const session: GatewaySession = new GatewaySession(
        { sessionId, clientId, conversationId, timeZone: tz.timeZone, admittedAt, newConversation },
        this.sessionDeps,
        outbound,
        logger,
        (s, givenBack) => {
          route?.unsubscribe();
          const left = s.unansweredIds();
          if (left.length > 0) this.carriedOver.set(clientId, { ids: left.slice(-cfg.unansweredPerClient), at: this.deps.steady() });
          else this.carriedOver.delete(clientId);
          this.sessions.delete(s.id);
          this.deps.metrics.clientsConnected.set(this.sessions.size);
          this.closing.add(givenBack);
          void givenBack.then(() => this.closing.delete(givenBack));
        },
      );
      const carried = this.carriedOver.get(clientId);
      // Kept until this session closes and says what it leaves (an admission that fails below keeps them for the next).
      const carriedIds = carried && this.deps.steady() - carried.at < CARRIED_FOR_MS ? carried.ids : [];
      session.carryUnanswered([...new Set([...carriedIds, ...leftByReplaced])].slice(-cfg.unansweredPerClient));
      route = this.deps.bus.serve(sessionSubject(sessionId), (p) => this.onRoutedSend(session, p));
      await this.deps.log.append(
        session.event({ $case: 'clientConnected', clientConnected: { gatewayId: this.deps.gatewayId, timeZone: tz.timeZone, newConversation } }),
      );
      this.sessions.set((registered = sessionId), session);
      this.deps.metrics.clientsConnected.set(this.sessions.size);
      this.deps.metrics.admissionsAccepted.inc();
      const welcome: ServerFrame = {
        frame: {
          $case: 'welcome',
          welcome: {
            sessionId, conversationId, clientId,
            serverTime: new Date(now),
            localTime: isoLocalTime(new Date(now), tz.timeZone),
            maxMediaBytes: cfg.maxMediaBytes,
            firstMessageDeadlineMs: cfg.firstMessageTimeoutMs,
            silenceLimitMs: cfg.silenceLimitMs,
            timeZone: tz.timeZone,
            lastSeq,
          },
        },
      };
      // Resends of messages sent before this connection are judged once the read models have them (waited for lazily).
      if (lastSeq > 0) session.earlierHistory(this.deps.readModelsSettled(cfg.readYourWritesMs));
      await session.start(welcome, resumeAfter, { subscribe: (h) => this.deps.bus.subscribe(clientSubject(clientId), h), flush: () => this.deps.bus.flush() });
      logger.info({ timeZone: tz.timeZone, resumeAfter }, 'client connected');
      answered('admitted');
      // Admitted while a drain began: it has nothing in processing, so it ends at once.
      if (this.stopping) void session.endForShutdown(cfg.retryAfterMs);
      return session;
    } catch (err) {
      route?.unsubscribe();
      if (registered && this.sessions.delete(registered)) this.deps.metrics.clientsConnected.set(this.sessions.size);
      if (slot) await this.leases.release(slot);
      const st = toStatus(err, callLogger, new ChatFlowError('UNAVAILABLE', 'could not open the session; retry'));
      if (!call.cancelled) call.emit('error', st);
      answered(call.cancelled ? 'cancelled' : grpcStatus[st.code]);
      return undefined;
    }
  }

  /**
   * Asks the gateway holding `sessionId` (this one or another, over the bus as
   * a routed Send) to close it and give its slot back; resolves with the
   * messages it left unanswered. Whatever the answer, the claim made next
   * says what holds the slot: nobody serves the session (its gateway died:
   * the slot lapses), or no answer came in time.
   */
  private async takeOver(sessionId: string, clientId: string): Promise<string[]> {
    try {
      return decodeYieldReply(await this.deps.bus.request(sessionSubject(sessionId), encodeRoutedYield(clientId), TAKE_OVER_MS));
    } catch (err) {
      this.logger.debug({ err, sessionId }, 'could not take over the earlier stream');
      return [];
    }
  }

  /** Asks the gateway serving a session whether it is open there (see secondConnection). */
  private async probeHolder(sessionId: string): Promise<HolderProbe> {
    try {
      await this.deps.bus.request(sessionSubject(sessionId), PROBE_PAYLOAD, HOLDER_PROBE_MS);
      return 'answered';
    } catch (err) {
      return err instanceof NoResponderError && !err.timedOut ? 'no-responder' : 'unknown';
    }
  }

  /**
   * The conversation a client asks to continue, read-your-writes: the read
   * model may lag the log (the conversation was created a moment ago, maybe
   * on another gateway), so before answering NOT_FOUND it is brought up to
   * the log's end as of this request, within CHATFLOW_READ_YOUR_WRITES_MS.
   */
  private async ownedConversation(conversationId: string, clientId: string): Promise<ConversationDoc> {
    let conv = await this.deps.conversations.get(conversationId);
    if (!conv) {
      const settled = await this.deps.readModelsSettled(this.deps.config.readYourWritesMs);
      conv = await this.deps.conversations.get(conversationId);
      if (!conv && !settled) {
        this.deps.metrics.admissionsRefused.inc({ reason: 'read_model_behind' });
        throw new ChatFlowError('UNAVAILABLE', 'the history is catching up with recent events; retry shortly', { 'retry-after-ms': String(this.deps.config.retryAfterMs) });
      }
      if (!conv) {
        this.deps.metrics.admissionsRefused.inc({ reason: 'not_found' });
        throw new ChatFlowError('NOT_FOUND', `conversation ${conversationId} not found`);
      }
    }
    const denied = ownershipError('conversation', conv.clientId, clientId);
    if (denied) {
      this.deps.metrics.admissionsRefused.inc({ reason: 'permission_denied' });
      throw denied;
    }
    return conv;
  }

  private async refuseAs<T>(reason: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      this.deps.metrics.admissionsRefused.inc({ reason });
      throw e;
    }
  }

  // ---- shutdown drain -------------------------------------------------------

  /**
   * Drain, step 1 (as health turns NOT_SERVING): no new sessions, and new
   * messages on open streams are refused with UNAVAILABLE + `retry-after-ms`.
   */
  beginDrain(): void {
    this.stopping = true;
    this.leases?.stop();
    clearInterval(this.sweepTimer);
    clearInterval(this.overdueTimer);
    this.busWatch?.unsubscribe();
    for (const s of this.sessions.values()) s.beginDrain(this.deps.config.retryAfterMs);
  }

  /**
   * Drain, step 2: each stream ends (UNAVAILABLE + `retry-after-ms`) as soon as
   * the replies to the messages it sent were delivered on it; whatever is left
   * ends when `settled` resolves (this process's worker finished what it had
   * in processing, and its replies had `settleMs` to arrive) or after
   * `graceMs`, whichever comes first. A client whose message was still
   * waiting in the log gets its reply after reconnecting (`x-resume-after`).
   */
  async drain(opts: { graceMs: number; settled?: Promise<void>; settleMs: number }): Promise<void> {
    this.beginDrain();
    const retryAfterMs = this.deps.config.retryAfterMs;
    const timers: NodeJS.Timeout[] = [];
    const after = (ms: number) => new Promise<void>((r) => timers.push(setTimeout(r, ms)));
    const settled = opts.settled?.catch(() => undefined).then(() => after(opts.settleMs));
    const giveUp = Promise.race([after(opts.graceMs), ...(settled ? [settled] : [])]);
    const ending: Promise<void>[] = [];
    await Promise.all(
      [...this.sessions.values()].map(async (s) => {
        await Promise.race([s.repliesDelivered(), giveUp]);
        // Ended at once; its slot and its disconnect follow.
        ending.push(s.endForShutdown(retryAfterMs));
      }),
    );
    // No session of this gateway is open now: its slots go back in one write, not one release per session. Then the
    // sessions whose clients left just before, and those just ended: their disconnects recorded (and slots given
    // back) before the registry and the log close (the stack's scale run: 10,000 streams cancelled, then a stop, and
    // the releases still queued failed with "client was closed", holding those slots until their leases lapsed).
    // Both within one more grace: a registry that does not answer (frozen, not down) holds the drain no longer, and
    // the slots then lapse as after a crash (one grace each let a frozen FerretDB reach the hard deadline).
    const rest = after(opts.graceMs);
    await Promise.race([this.leases.releaseAll(), rest]);
    await Promise.race([Promise.all([...ending, ...this.closing]), rest]);
    for (const t of timers) clearTimeout(t);
    // After the sessions gave their slots back (and told the others): no more notices to hear. Not awaited: a bus
    // that never came up (its flush still waiting) must not hold the drain.
    void this.releasesHeard?.then((sub) => sub?.unsubscribe());
  }

  /** Replies still awaited per open session, for the log line of a drain that ran out of time. */
  pendingReplies(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.repliesPending;
    return n;
  }
}

export function getter(md: Metadata): (key: string) => string | undefined {
  return (key) => {
    const v = md.get(key);
    return v.length > 0 ? String(v[0]) : undefined;
  };
}

function parseResumeAfter(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw new ChatFlowError('INVALID_ARGUMENT', `x-resume-after must be a non-negative integer (an event seq), got "${raw.slice(0, 32)}"`);
  return Number(raw);
}
